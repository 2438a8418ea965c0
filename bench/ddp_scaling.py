"""Optimizer steps per second of stage 8's training loop on 1 and N DDP processes, the same global
batch (ESPnet splits every batch among the ranks), on the tiny recipe's data:

    python bench/ddp_scaling.py --recipe DIR [--nproc 2] [--steps 9] [--method lora] [--ngpu 0]

DIR is a recipe folder where stages 1-6 have run (e.g. egs2/mini_multi/asr1 after
``./run.sh --stop_stage 6 --local_data_opts '--langs ja,ko --train_per_lang 6 ...'``). Each run is
tests/ddp_harness.py (ESPnet's ``Trainer.train_one_epoch`` under ``DistributedDataParallel``)
through the driver's launcher; the time is that of the training steps alone (model build, data
loading set-up and process start-up excluded). On CPU the processes use gloo and share the
machine's cores: with 2 cores, 2 processes cannot beat 1 by more than the cores allow.
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from test_ddp import ESPNET  # noqa: E402  (stage 8's asr_train options)


def measure(recipe: Path, nproc: int, steps: int, method: str, ngpu: int, extra):
    config = ROOT / "conf" / f"train_{method}.yaml"
    with tempfile.TemporaryDirectory() as tmp:
        command = [str(ROOT / "tests/ddp_harness.py"), "--out", tmp, "--steps", str(steps),
                   f"--method={method}={config}", "--", *ESPNET, *extra]
        if nproc > 1:
            command = ["-m", "espnet_lalora.bin.launch", "--nproc", str(nproc), "--log",
                       f"{tmp}/harness.log", "--", *command, "--ngpu", "1" if ngpu else "0",
                       "--multiprocessing_distributed", "false",
                       "--dist_backend", "nccl" if ngpu else "gloo"]
        else:
            command += ["--ngpu", str(ngpu)]
        result = subprocess.run([sys.executable, *command], cwd=recipe, capture_output=True,
                                text=True)
        if result.returncode:
            sys.exit(result.stderr[-3000:])
        state = torch.load(Path(tmp) / f"{method}.rank0.pt")
    return state["steps"], state["seconds"]


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", type=Path, required=True)
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--steps", type=int, default=9)
    parser.add_argument("--method", default="lora")
    parser.add_argument("--ngpu", type=int, default=0, help="1: one GPU per process (NCCL)")
    parser.add_argument("--extra", default="", help="more asr_train options, e.g. '--use_amp true'")
    args = parser.parse_args()
    rows = []
    for nproc in (1, args.nproc):
        steps, seconds = measure(args.recipe, nproc, args.steps, args.method, args.ngpu,
                                 args.extra.split())
        rows.append((nproc, steps, seconds, steps / seconds))
        print(f"{nproc} process(es): {steps} steps in {seconds:.1f} s, {steps / seconds:.3f} "
              "steps/s", file=sys.stderr)
    base = rows[0][3]
    print("| processes | steps | seconds | steps/s | speed-up | efficiency |")
    print("| --- | --- | --- | --- | --- | --- |")
    for nproc, steps, seconds, rate in rows:
        print(f"| {nproc} | {steps} | {seconds:.1f} | {rate:.3f} | {rate / base:.2f}x | "
              f"{100 * rate / base / nproc:.0f}% |")


if __name__ == "__main__":
    main()
