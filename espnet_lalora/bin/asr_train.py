"""ESPnet's ``asr_train`` with the espnet-lalora methods registered (same options, same trainer).
A ``--config`` that names a ``base_config`` is composed first (espnet_lalora.config).

``--prepare_out FILE [--prepare_args '...']``: first run the method's stage-7 pass in this
process (the driver does this when stages 7 and 8 run together on one process: the pass then
shares the imports and start-up of training), write FILE and train on it.
"""

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path

from espnet_lalora.quiet import quiet_espnet_imports

quiet_espnet_imports()

from espnet2.utils.types import str2bool  # noqa: E402

from espnet_lalora.distributed import is_rank_zero, redirect_rank_output  # noqa: E402
from espnet_lalora.config import parse_asr_train_args, with_composed_config  # noqa: E402
from espnet_lalora.espnet_plugin import ASRTask  # noqa: E402
from espnet_lalora.methods import AdapterConfigError, get_method  # noqa: E402


def repair_interrupted_run(output_dir: Path) -> None:
    """ESPnet ends an epoch by writing checkpoint.pth, then <N>epoch.pth. A run killed between
    the two (or during the second) leaves that snapshot missing or truncated, and the resumed
    run would fail at its very end, when it averages the best epochs. The snapshot is exactly
    the checkpoint's model, so it is written again from there. A truncated checkpoint cannot be
    resumed: say so and what to do."""
    import torch

    from espnet_lalora.fileio import atomic_path

    checkpoint = output_dir / "checkpoint.pth"
    if not checkpoint.exists():
        return
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        epoch = int(state["reporter"]["epoch"])
    except Exception as e:  # truncated zip, unpickling error, missing key
        sys.exit(f"error: {checkpoint} cannot be read ({type(e).__name__}: {e}); the run was "
                 f"probably killed while saving it. Remove it to train {output_dir} from epoch 1 "
                 f"(or remove {output_dir} to start over).")
    snapshot = output_dir / f"{epoch}epoch.pth"
    if snapshot.exists():
        try:
            torch.load(snapshot, map_location="cpu", weights_only=False)
            return
        except Exception:
            pass
    with atomic_path(snapshot) as tmp:  # a second kill now leaves the old file, not half a new one
        torch.save(state["model"], tmp)
    print(f"[espnet_lalora] {snapshot.name} was missing or truncated (the run was killed while "
          f"saving epoch {epoch}); written again from {checkpoint.name}", file=sys.stderr)


def main(cmd=None):
    redirect_rank_output()  # launched with several processes: ranks > 0 log to their own file
    ours = argparse.ArgumentParser(add_help=False)
    ours.add_argument("--prepare_out", type=Path)
    ours.add_argument("--prepare_args", default="")
    options, cmd = ours.parse_known_args(sys.argv[1:] if cmd is None else cmd)
    if options.prepare_out is not None:
        import logging

        logging.basicConfig(level=logging.INFO, format="%(message)s")
        args, _ = parse_asr_train_args(cmd)
        try:
            method = get_method(args.adapter)
            if method.prepare_output is None:
                raise AdapterConfigError(f"--prepare_out: {method.name} has no stage 7")
            method.prepare(args, shlex.split(options.prepare_args), options.prepare_out)
        except AdapterConfigError as e:
            sys.exit(f"error: {e}")
        logging.getLogger().handlers.clear()  # ESPnet's main sets up its own logging
        cmd += ["--adapter_conf", f"{method.prepare_conf_key}={options.prepare_out.resolve()}"]
    resume = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    resume.add_argument("--output_dir", type=Path)
    resume.add_argument("--resume", type=str2bool, default=False)  # read as ESPnet reads it
    known, _ = resume.parse_known_args(cmd)
    # rank 0 writes the checkpoints (ESPnet's trainer); it alone repairs them
    if known.output_dir is not None and known.resume and is_rank_zero():
        repair_interrupted_run(known.output_dir)
    # resumed: ESPnet continues from a checkpoint (the driver always asks it to, when one exists)
    resumed = bool(known.resume and known.output_dir is not None
                   and (known.output_dir / "checkpoint.pth").exists())
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        ASRTask.main(cmd=with_composed_config(cmd, tmp))
    if known.output_dir is not None and is_rank_zero():
        write_resources(known.output_dir, time.perf_counter() - started, resumed)


def write_resources(output_dir: Path, seconds: float, resumed: bool) -> None:
    """train_resources.yaml: what this training took (what a method comparison reports beside
    the error rates). Peak memory is the largest resident set of this process and of its data
    loader workers; on a GPU also the CUDA allocator's peak. A resumed run counts only its own
    part (``resumed: true``)."""
    import resource

    import torch
    import yaml

    from espnet_lalora.fileio import write_text_atomic

    peak_kb = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    record = {"train_seconds": round(seconds, 1), "peak_rss_mb": round(peak_kb / 1024),
              "resumed": bool(resumed)}
    if torch.cuda.is_available():
        record["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2 ** 20)
    write_text_atomic(output_dir / "train_resources.yaml", yaml.safe_dump(record, sort_keys=False))


if __name__ == "__main__":
    main()
