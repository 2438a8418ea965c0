"""Stage 10: decode test sets with espnet-lalora's kv-cached, batched Whisper beam search
(``espnet_lalora.bin.whisper_inference``) in ``--nj`` parallel jobs, and merge the outputs into
``<out>/{text,token,token_int,score}`` as ESPnet's recipes lay them out.

Several sets (``--data A --out DIR_A --data B --out DIR_B``) are decoded by the same jobs: each
job loads the model once for all of them (a start costs about 10 s of CPU, as much as decoding
a few utterances). The jobs' logs are in ``<parent of the first --out>/logdir/``.

Whisper is told each utterance's language (``<|ja|><|transcribe|><|notimestamps|>``) from
``utt2lang`` (or ``--lang``), or detects it (``--inference_args "--detect_language true"``, or
language experts' ``--route lid``): then ``<out>/lang`` holds the detected languages and
``<out>/lid_accuracy.yaml`` how many match ``utt2lang``.
"""

import argparse
import os
import shlex
import shutil
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
    parser.add_argument("--data", required=True, type=Path, action="append",
                        help="dump/raw/<test set>; repeat with --out for more sets")
    parser.add_argument("--asr_train_config", required=True, type=Path)
    parser.add_argument("--asr_model_file", default="none", help="'none': the config's weights")
    parser.add_argument("--inference_config", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path, action="append",
                        help="where the decoding of the --data in the same position goes")
    parser.add_argument("--nj", type=int, default=2)
    parser.add_argument("--ngpu", type=int, default=0)
    parser.add_argument("--lang", default="multi")
    parser.add_argument("--inference_args", default="")
    parser.add_argument("--python", default=sys.executable)
    args = parser.parse_args(argv)

    if len(args.data) != len(args.out):
        sys.exit(f"error: {len(args.data)} --data but {len(args.out)} --out: give one --out "
                 f"per --data")
    # The sets' utterances under one name space: "<set index>@<utterance>" (ids may repeat
    # across sets).
    wav, langs = {}, {}
    try:
        for index, data in enumerate(args.data):
            set_wav = read_map(data / "wav.scp", "audio path")
            set_langs = (read_map(data / "utt2lang", "language") if args.lang == "multi"
                         else {u: args.lang for u in set_wav})
            for lang in set(set_langs.values()):
                check_language(lang, str(data / "utt2lang") if args.lang == "multi" else "--lang")
            for utt in set_wav:
                if utt not in set_langs:
                    raise DataDirError(f"{data / 'utt2lang'}: no language for {utt}")
                wav[f"{index}@{utt}"] = set_wav[utt]
                langs[f"{index}@{utt}"] = set_langs[utt]
    except (DataDirError, ValueError) as e:
        sys.exit(f"error: {e}")
    for needed in (args.asr_train_config, args.inference_config):
        if not needed.is_file():
            sys.exit(f"error: {needed} not found")
    if args.asr_model_file != "none" and not Path(args.asr_model_file).is_file():
        sys.exit(f"error: --asr_model_file {args.asr_model_file} not found (stage 9 writes it)")

    logdir = args.out[0].parent / "logdir"
    logdir.mkdir(parents=True, exist_ok=True)
    for old in logdir.glob("output.*"):  # an earlier call's outputs must not be merged in
        shutil.rmtree(old)
    write_map(logdir / "wav.scp", wav)
    write_map(logdir / "utt2lang", langs)
    utts = sorted(wav)
    nj = max(1, min(args.nj, len(utts)))
    jobs = []
    for j in range(nj):
        keys = logdir / f"keys.{j + 1}"
        keys.write_text("".join(f"{u}\n" for u in utts[j::nj]))
        jobs.append((j + 1, keys, len(utts[j::nj])))

    threads = str(max(1, (os.cpu_count() or 1) // nj))
    env = dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    progress = Progress(len(wav), f"decode {' '.join(d.name for d in args.data)} -> "
                                  f"{args.out[0].parent}")
    running = []
    for j, keys, count in jobs:
        cmd = [args.python, "-m", "espnet_lalora.bin.whisper_inference", "--ngpu", str(args.ngpu),
               "--config", str(args.inference_config),
               "--data_path_and_name_and_type", f"{logdir / 'wav.scp'},speech,sound",
               "--key_file", str(keys), "--utt2lang", str(logdir / "utt2lang"),
               "--asr_train_config", str(args.asr_train_config),
               "--output_dir", str(logdir / f"output.{j}")]
        if args.asr_model_file != "none":
            cmd += ["--asr_model_file", str(args.asr_model_file)]
        cmd += shlex.split(args.inference_args)
        log = logdir / f"decode.{j}.log"
        running.append((subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                                         env=env), log, j, count))

    def done_in(log):  # the decoder logs "decode <set>: n/total utt ..."
        lines = [l for l in log.read_text(errors="replace").splitlines() if " utt (" in l]
        return int(lines[-1].split(": ", 1)[1].split("/")[0]) if lines else 0

    finished = 0
    while running:
        time.sleep(2)
        still_running = []
        for proc, log, j, count in running:
            code = proc.poll()
            if code is None:
                still_running.append((proc, log, j, count))
            elif code != 0:
                for other in running:
                    other[0].kill()
                tail = log.read_text(errors="replace").strip().splitlines()[-5:]
                sys.exit(f"error: decoding job {j} failed; see {log}:\n  " + "\n  ".join(tail))
            else:
                finished += count
        running = still_running
        progress.update(finished + sum(done_in(r[1]) for r in running) - progress.done)

    merged = {name: {} for name in OUTPUTS + ("lang",)}
    for j, _, _ in jobs:
        for name in merged:
            path = logdir / f"output.{j}" / "1best_recog" / name
            if name == "lang" and not path.is_file():
                continue
            for line in path.read_text(encoding="utf-8").splitlines():
                key, _, value = line.partition(" ")
                if key:
                    merged[name][key] = value.strip()
    for index, out in enumerate(args.out):
        out.mkdir(parents=True, exist_ok=True)
        prefix = f"{index}@"

        def own(mapping):
            return {k[len(prefix):]: v for k, v in mapping.items() if k.startswith(prefix)}

        for name in OUTPUTS:
            write_map(out / name, own(merged[name]))
        if merged["lang"]:
            write_map(out / "lang", own(merged["lang"]))
            write_lid_accuracy(own(merged["lang"]), own(langs), out / "lid_accuracy.yaml")


def write_lid_accuracy(detected, langs, path: Path):
    """Language identification accuracy, overall and per true language."""
    import yaml

    from espnet_lalora.fileio import write_text_atomic

    per_lang = {}
    for utt, lang in detected.items():
        right, total = per_lang.get(langs[utt], (0, 0))
        per_lang[langs[utt]] = (right + (lang == langs[utt]), total + 1)
    right = sum(r for r, _ in per_lang.values())
    report = {"accuracy": round(100.0 * right / len(detected), 2), "right": right,
              "total": len(detected),
              "per_language": {lang: round(100.0 * r / t, 2)
                               for lang, (r, t) in sorted(per_lang.items())}}
    write_text_atomic(path, yaml.safe_dump(report, sort_keys=False))


if __name__ == "__main__":
    main()
