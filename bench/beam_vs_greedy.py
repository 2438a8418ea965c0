"""Beam search against greedy on a recipe's own decodings: CER per model, test set and language
for each decoding config that stage 10 ran, and beam 5 against greedy paired on the same
utterances (CER difference, 95% bootstrap interval over utterances, two-sided p).

Run the decodings first, in the recipe (the first as run.sh does by default):

  ./run.sh --stage 10 --stop_stage 11                                   # conf/decode.yaml
  ./run.sh --stage 10 --stop_stage 11 --inference_config conf/decode_beam5_espnet.yaml
  ./run.sh --stage 10 --stop_stage 11 --inference_config conf/decode_beam5.yaml

then

  .venv/bin/python bench/beam_vs_greedy.py --recipe egs2/mini_multi/asr1
"""

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from espnet_lalora.significance import cer, compare, sclite_utterances  # noqa: E402

TAGS = {"decode": "greedy", "decode_beam5_espnet": "beam 5, ESPnet ranking",
        "decode_beam5": "beam 5, Whisper ranking"}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", type=Path, default=ROOT / "egs2/mini_multi/asr1")
    p.add_argument("--exps", nargs="+",
                   default=["asr_train_lora", "asr_zero_shot_whisper_base"])
    p.add_argument("--test_sets", nargs="+",
                   default=["test", "test_free", "test_room", "test_engine"])
    p.add_argument("--tags", nargs="+", default=list(TAGS), choices=list(TAGS),
                   help="the decodings to compare (the first is the reference: greedy)")
    args = p.parse_args(argv)

    def counts(exp, tag, test):
        result = args.recipe / "exp" / exp / f"decode_{tag}" / test / "score_cer" / "result.txt"
        if not result.is_file():
            sys.exit(f"error: {result}: missing; run stages 10-11 with "
                     f"--inference_config conf/{tag}.yaml (see --help)")
        return sclite_utterances(result)

    def langs(test):
        path = args.recipe / "data" / test / "utt2lang"
        return dict(line.split() for line in path.read_text().splitlines())

    tags = args.tags
    print(f"CER % (errors / reference characters) in {args.recipe}; last columns: each beam "
          f"minus {TAGS[tags[0]]}, 95% bootstrap interval over utterances, two-sided p")
    print("| model | test set | language | utts | " + " | ".join(TAGS[t] for t in tags) + " | " +
          " | ".join(f"{TAGS[t]} - {TAGS[tags[0]]}" for t in tags[1:]) + " |")
    print("|" + " --- |" * (4 + 2 * len(tags) - 1))
    for exp in args.exps:
        pooled = {tag: {} for tag in tags}
        for test in args.test_sets:
            by_tag = {tag: counts(exp, tag, test) for tag in tags}
            utt_lang = langs(test)
            for tag in tags:
                pooled[tag].update({f"{test}/{u}": c for u, c in by_tag[tag].items()})
            for lang in sorted(set(utt_lang.values())) + [None]:
                utts = sorted(u for u in by_tag[tags[0]] if lang is None or utt_lang[u] == lang)
                print(row(exp, test, lang or "all", utts, by_tag, tags))
        print(row(exp, "all", "all", sorted(pooled[tags[0]]), pooled, tags))


def row(exp, test, lang, utts, by_tag, tags):
    cells = [f"{cer(by_tag[tag], utts):.1f}" for tag in tags]
    diffs = []
    for tag in tags[1:]:
        errors = [np.array([[by_tag[t][u][0] for u in utts]]) for t in (tag, tags[0])]
        lengths = np.array([by_tag[tags[0]][u][1] for u in utts])
        c = compare(errors[0], errors[1], lengths)
        diffs.append(f"{c['diff']:+.1f} [{c['low']:+.1f}, {c['high']:+.1f}] p={c['p']:.2f}")
    return f"| {exp} | {test} | {lang} | {len(utts)} | " + " | ".join(cells + diffs) + " |"


if __name__ == "__main__":
    main()
