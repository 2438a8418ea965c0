"""Two sweep records on the same utterances, per test set and language: CER of each, their
difference (a - b) with its interval and p-value (espnet_lalora.significance: sentences as the
unit, seeds at their own degrees of freedom), Holm over the whole table. For instance zero-shot
Whisper decoded as the recipe decodes it (a) against the first sweep's greedy decoding (b):

  .venv/bin/python bench/compare_records.py docs/results/runs/full/zero_shot_recipe.json \
      docs/results/runs/full/zero_shot.json

A record holds one run's errors per utterance in the order of its size's test_sets.json.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from espnet_lalora.significance import adjust_family, compare  # noqa: E402


def table(a: dict, b: dict, test_sets: dict) -> list:
    rows = []
    for test, order in test_sets.items():
        if test not in a["errors"] or test not in b["errors"]:
            continue
        langs = np.array(order["langs"])
        for lang in sorted(set(order["langs"])):
            pick = langs == lang
            lengths = np.array(order["lengths"])[pick]
            sentences = [s for s, p in zip(order["sentences"], pick) if p]
            ea, eb = (np.array(r["errors"][test])[pick] for r in (a, b))
            result = compare(ea, eb, lengths, sentences)
            rows.append(dict(test=test, lang=lang, n=int(pick.sum()),
                             a=100 * ea.sum() / lengths.sum(), b=100 * eb.sum() / lengths.sum(),
                             **result))
    return adjust_family(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--test_sets", type=Path, default=None,
                        help="the records' test_sets.json (default: beside record a)")
    args = parser.parse_args()
    path = args.test_sets or args.a.parent / "test_sets.json"
    for f in (args.a, args.b, path):
        if not f.is_file():
            sys.exit(f"error: {f}: not found")
    a, b = (json.loads(f.read_text()) for f in (args.a, args.b))
    rows = table(a, b, json.loads(path.read_text()))
    print(f"a: {args.a}\nb: {args.b}\n")
    print("| set | language | utterances | CER a | CER b | a - b [Holm interval] | p (Holm) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        mark = "**" if r["p_holm"] < 0.05 else ""
        print(f"| {r['test']} | {r['lang']} | {r['n']} | {r['a']:.1f} | {r['b']:.1f} | "
              f"{mark}{r['diff']:+.1f} [{r['low']:+.1f}, {r['high']:+.1f}]{mark} | "
              f"{r['p']:.3f} ({r['p_holm']:.3f}) |")


if __name__ == "__main__":
    main()
