"""Stage 4: drop training/validation utterances that are too short, too long (Whisper sees at
most 30 s) or whose transcript is empty after normalization, and write ``text_whisper``: the
transcript behind Whisper's language token (``<|ja|>...``), which the plugin turns into
Whisper's prompt ``<|ja|><|transcribe|><|notimestamps|>`` during training."""

import argparse
import shutil
import sys
from pathlib import Path

from espnet_lalora.datadir import (DataDirError, load_data_dir, read_map, replace_dir, spk2utt,
                                    write_map)
from espnet_lalora.text_norm import normalize
from espnet_lalora.whisper_langs import check_language


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--min_sec", type=float, default=0.3)
    parser.add_argument("--max_sec", type=float, default=30.0)
    parser.add_argument("--lang", default="multi",
                        help="language of every utterance, or 'multi' to read utt2lang")
    args = parser.parse_args(argv)
    try:
        files = load_data_dir(args.data, require_lang=args.lang == "multi")
        num_samples = read_map(args.data / "utt2num_samples")
    except DataDirError as e:
        sys.exit(f"error: {e} (stage 3 writes it)")
    langs = files.get("utt2lang") or {u: args.lang for u in files["wav.scp"]}
    try:
        for lang in sorted(set(langs.values())):
            check_language(lang, where=str(args.data / "utt2lang") if args.lang == "multi"
                           else "--lang")
    except ValueError as e:
        sys.exit(f"error: {e}")

    keep, dropped = [], {"short": 0, "long": 0, "empty": 0}
    for utt in files["wav.scp"]:
        seconds = int(num_samples[utt]) / 16000
        if seconds < args.min_sec:
            dropped["short"] += 1
        elif seconds > args.max_sec:
            dropped["long"] += 1
        elif not normalize(files["text"][utt], langs[utt]):
            dropped["empty"] += 1
        else:
            keep.append(utt)
    if not keep:
        sys.exit(f"error: {args.data}: no utterance left after filtering ({dropped}); check "
                 "--min_wav_duration/--max_wav_duration")
    tmp = args.out.with_name(args.out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, mapping in list(files.items()) + [("utt2num_samples", num_samples)]:
        if name != "spk2utt":
            write_map(tmp / name, {u: mapping[u] for u in keep})
    write_map(tmp / "utt2lang", {u: langs[u] for u in keep})
    write_map(tmp / "spk2utt", spk2utt({u: files["utt2spk"][u] for u in keep}))
    write_map(tmp / "text_whisper", {u: f"<|{langs[u]}|>{files['text'][u]}" for u in keep})
    replace_dir(tmp, args.out)
    print(f"{args.out}: kept {len(keep)} of {len(files['wav.scp'])} utterances; dropped "
          f"{dropped['short']} shorter than {args.min_sec} s, {dropped['long']} longer than "
          f"{args.max_sec} s, {dropped['empty']} with empty text", file=sys.stderr)


if __name__ == "__main__":
    main()
