"""Stage 10: decode one test set with ESPnet's ``asr_inference``, per language and in ``--nj``
parallel jobs, and merge the outputs into ``<out>/{text,token,token_int,score}`` as ESPnet's
recipes lay them out.

Whisper is told each utterance's language (``<|ja|><|transcribe|><|notimestamps|>``): a test set is
split by ``utt2lang`` and every part decoded with its language prompt.
"""

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from espnet_lalora.datadir import DataDirError, read_map, write_map
from espnet_lalora.progress import Progress
from espnet_lalora.whisper_langs import check_language

OUTPUTS = ("text", "token", "token_int", "score")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True, type=Path, help="dump/raw/<test set>")
    parser.add_argument("--asr_train_config", required=True, type=Path)
    parser.add_argument("--asr_model_file", default="none", help="'none': the config's weights")
    parser.add_argument("--inference_config", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--nj", type=int, default=2)
    parser.add_argument("--ngpu", type=int, default=0)
    parser.add_argument("--lang", default="multi")
    parser.add_argument("--inference_args", default="")
    parser.add_argument("--python", default=sys.executable)
    args = parser.parse_args(argv)

    try:
        wav = read_map(args.data / "wav.scp", "audio path")
        langs = (read_map(args.data / "utt2lang", "language") if args.lang == "multi"
                 else {u: args.lang for u in wav})
        for lang in set(langs.values()):
            check_language(lang, str(args.data / "utt2lang") if args.lang == "multi" else "--lang")
    except (DataDirError, ValueError) as e:
        sys.exit(f"error: {e}")
    for needed in (args.asr_train_config, args.inference_config):
        if not needed.is_file():
            sys.exit(f"error: {needed} not found")
    if args.asr_model_file != "none" and not Path(args.asr_model_file).is_file():
        sys.exit(f"error: --asr_model_file {args.asr_model_file} not found (stage 9 writes it)")

    logdir = args.out / "logdir"
    logdir.mkdir(parents=True, exist_ok=True)
    jobs = []
    for lang in sorted(set(langs.values())):
        utts = sorted(u for u in wav if langs[u] == lang)
        n = max(1, min(args.nj, len(utts)))
        for j in range(n):
            keys = logdir / f"keys.{lang}.{j + 1}"
            keys.write_text("".join(f"{u}\n" for u in utts[j::n]))
            jobs.append((lang, j + 1, keys, len(utts[j::n])))

    threads = str(max(1, (os.cpu_count() or 1) // max(1, args.nj)))
    env = dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    progress = Progress(len(wav), f"decode {args.data.name} -> {args.out}")
    pending, running = list(jobs), []

    def start(job):
        lang, j, keys, count = job
        out_dir = logdir / f"output.{lang}.{j}"
        cmd = [args.python, "-m", "espnet_lalora.bin.asr_inference", "--ngpu", str(args.ngpu),
               "--batch_size", "1", "--config", str(args.inference_config),
               "--data_path_and_name_and_type", f"{args.data / 'wav.scp'},speech,sound",
               "--key_file", str(keys), "--asr_train_config", str(args.asr_train_config),
               "--output_dir", str(out_dir), "--lang_prompt_token", f"<|{lang}|> <|transcribe|>"]
        if args.asr_model_file != "none":
            cmd += ["--asr_model_file", str(args.asr_model_file)]
        cmd += shlex.split(args.inference_args)
        log = logdir / f"decode.{lang}.{j}.log"
        handle = open(log, "w")
        return subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env), log, job

    def finished_utts(log):
        try:
            return log.read_text(errors="replace").count("best hypo:")
        except FileNotFoundError:
            return 0

    done_before = 0
    while pending or running:
        while pending and len(running) < args.nj:
            running.append(start(pending.pop(0)))
        time.sleep(2)
        for proc, log, job in list(running):
            if proc.poll() is not None:
                running.remove((proc, log, job))
                if proc.returncode != 0:
                    for other, _, _ in running:
                        other.kill()
                    tail = log.read_text(errors="replace").strip().splitlines()[-5:]
                    sys.exit(f"error: decoding job {job[0]}.{job[1]} failed; see {log}:\n  "
                             + "\n  ".join(tail))
                done_before += job[3]
        now = done_before + sum(finished_utts(log) for _, log, _ in running)
        progress.update(now - progress.done)

    for name in OUTPUTS:
        merged = {}
        for lang, j, _, _ in jobs:
            path = logdir / f"output.{lang}.{j}" / "1best_recog" / name
            if path.is_file():
                for line in path.read_text(encoding="utf-8").splitlines():
                    utt, _, value = line.partition(" ")
                    if utt:
                        merged[utt] = value.strip()
        if name == "text":  # an utterance decoded to nothing is kept, as an empty hypothesis
            merged = {u: merged.get(u, "") for u in wav}
        write_map(args.out / name, merged)


if __name__ == "__main__":
    main()
