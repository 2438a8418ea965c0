"""Stage 11: CER and WER with sclite, over the whole test set and per language.

Writes ``<out>/score_{cer,wer}/result.txt`` (all utterances) and
``<out>/score_{cer,wer}/<lang>/result.txt``, with the ``ref.trn``/``hyp.trn`` that were scored,
and ``text.norm`` files (normalized reference and hypothesis; the raw texts stay as they are).
"""

import argparse
import sys
from pathlib import Path

from espnet_lalora.datadir import DataDirError, read_map, write_map
from espnet_lalora.scoring import run_sclite, write_trn
from espnet_lalora.text_norm import characters, normalize, words


def read_hyp(path):
    """Decoding output: ``utt text``, where the text may be empty."""
    hyp = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            utt, _, text = line.strip().partition(" ")
            hyp[utt] = text.strip()
    return hyp


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ref", required=True, type=Path)
    parser.add_argument("--hyp", required=True, type=Path)
    parser.add_argument("--utt2lang", type=Path)
    parser.add_argument("--lang", default="multi")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    try:
        ref = read_map(args.ref, "transcript")
        langs = (read_map(args.utt2lang) if args.lang == "multi" else
                 {u: args.lang for u in ref})
    except DataDirError as e:
        sys.exit(f"error: {e}")
    hyp = read_hyp(args.hyp)
    unknown = sorted(set(hyp) - set(ref))
    if unknown:
        sys.exit(f"error: {args.hyp}: {len(unknown)} hypotheses have no reference in {args.ref} "
                 f"(e.g. {unknown[:3]}); decode and score the same test set")
    missing = [u for u in ref if u not in hyp]
    if missing:
        print(f"warning: {len(missing)} utterances have no hypothesis (scored as empty), e.g. "
              f"{missing[:3]}", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    write_map(args.out / "text.norm.ref", {u: normalize(t, langs[u]) for u, t in ref.items()})
    write_map(args.out / "text.norm.hyp", {u: normalize(hyp.get(u, ""), langs[u]) for u in ref})

    for metric, split in (("cer", characters), ("wer", words)):
        groups = {"": list(ref)}
        for lang in sorted(set(langs[u] for u in ref)):
            groups[lang] = [u for u in ref if langs[u] == lang]
        for lang, utts in groups.items():
            out = args.out / f"score_{metric}" / lang
            out.mkdir(parents=True, exist_ok=True)
            write_trn(out / "ref.trn", {u: split(ref[u], langs[u]) for u in utts})
            write_trn(out / "hyp.trn", {u: split(hyp.get(u, ""), langs[u]) for u in utts})
            summary = run_sclite(out / "ref.trn", out / "hyp.trn", out / "result.txt")["percent"]
            if lang == "":
                print(f"{args.out} {metric.upper()}: {summary['Err']:.1f}% "
                      f"({int(summary['Snt'])} utterances)", file=sys.stderr)


if __name__ == "__main__":
    main()
