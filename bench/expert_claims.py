"""The language-expert paper's two claims on a recipe's decodings: the table of every way to use
the experts next to pooled LoRA, the relative CER change with the language known and unknown,
and a paired bootstrap over the test utterances for each comparison.

Reads what stages 10-11 wrote (``exp/asr_*/decode_<tag><suffix>/<test>/score_cer/result.txt``,
sclite's per-utterance alignments) after:

  ./run.sh --method lang_experts --lid_decoding true
  ./run.sh --method lora --lid_decoding true
  ./run.sh --method lang_distill --lid_decoding true
  ./run.sh --method lang_distill_nolang
  .venv/bin/python bench/expert_claims.py --exp egs2/mini_multi/asr1/exp

Prints markdown (docs/experts.md holds a run of it).
"""

import argparse
from pathlib import Path

import numpy as np
import yaml

from espnet_lalora.significance import cer, compare, sclite_utterances

# (row label, experiment, decode dir suffix, language given?)
ROWS = [
    ("zero-shot Whisper base", "asr_zero_shot_whisper_base", "", True),
    ("pooled LoRA (`lora`)", "asr_train_lora", "", True),
    ("experts, routed by the given language", "asr_train_lang_experts", "_routed", True),
    ("experts fused, uniform weights", "asr_train_lang_experts", "", True),
    ("experts fused, weights learned on dev", "asr_train_lang_experts", "_fused_learned", True),
    ("student distilled from the experts", "asr_train_lang_distill", "", True),
    ("zero-shot Whisper base, LID", "asr_zero_shot_whisper_base", "_lid", False),
    ("pooled LoRA, LID by itself", "asr_train_lora", "_lid", False),
    ("experts, routed by base-Whisper LID", "asr_train_lang_experts", "_routed_lid", False),
    ("experts, routed by the fused experts' LID", "asr_train_lang_experts", "_routed_lid_fused",
     False),
    ("experts fused (uniform), LID by itself", "asr_train_lang_experts", "_lid", False),
    ("experts fused (learned), LID by itself", "asr_train_lang_experts", "_fused_learned_lid",
     False),
    ("student distilled, LID by itself", "asr_train_lang_distill", "_lid", False),
    ("student distilled without language token", "asr_train_lang_distill_nolang", "", False),
]
# (claim, contender row, baseline row)
CLAIMS = [
    ("language known: routed experts vs pooled LoRA", 2, 1),
    ("language known: uniform fusion vs pooled LoRA", 3, 1),
    ("language known: learned fusion vs pooled LoRA", 4, 1),
    ("language known: distilled student vs pooled LoRA", 5, 1),
    ("language unknown: routed experts (base LID) vs pooled LoRA (own LID)", 8, 7),
    ("language unknown: routed experts (fused LID) vs pooled LoRA (own LID)", 9, 7),
    ("language unknown: uniform fusion (own LID) vs pooled LoRA (own LID)", 10, 7),
    ("language unknown: learned fusion (own LID) vs pooled LoRA (own LID)", 11, 7),
    ("language unknown: distilled student (own LID) vs pooled LoRA (own LID)", 12, 7),
    ("language unknown: student without language token vs pooled LoRA (own LID)", 13, 7),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp", required=True, type=Path, help="the recipe's exp/ folder")
    parser.add_argument("--test", default="test")
    parser.add_argument("--tag", default="decode", help="the inference config's name")
    args = parser.parse_args()

    test_langs = {}
    loaded = []
    for label, exp, suffix, given in ROWS:
        decode = args.exp / exp / f"decode_{args.tag}{suffix}" / args.test
        result = decode / "score_cer" / "result.txt"
        if not result.is_file():
            loaded.append(None)
            continue
        counts = sclite_utterances(result)
        langs = {}
        for lang_dir in sorted((decode / "score_cer").iterdir()):
            if lang_dir.is_dir() and (lang_dir / "result.txt").is_file():
                for utt in sclite_utterances(lang_dir / "result.txt"):
                    langs[utt] = lang_dir.name
        test_langs.update(langs)
        lid_file = decode / "lid_accuracy.yaml"
        lid = yaml.safe_load(lid_file.read_text())["accuracy"] if lid_file.is_file() else None
        params = args.exp / exp / "export" / "params.yaml"
        trainable = yaml.safe_load(params.read_text())["trainable"] if params.is_file() else 0
        stored = trainable if "_routed" in suffix else 0
        loaded.append(dict(label=label, counts=counts, lid=lid, trainable=trainable,
                           stored=stored, given=given))
    languages = sorted(set(test_langs.values()))

    print(f"CER % on `{args.test}` ({len(test_langs)} utterances); LID: language identification "
          "accuracy of the decodings that detect the language.\n")
    print("| model | language | trainable | stored beside the base | LID % | CER all | "
          + " | ".join(f"CER {l}" for l in languages) + " |")
    print("|---|---|---|---|---|---|" + "---|" * len(languages))
    for row in loaded:
        if row is None:
            continue
        by_lang = [cer(row["counts"], [u for u in row["counts"] if test_langs.get(u) == l])
                   for l in languages]
        lid = "" if row["lid"] is None else f"{row['lid']:.1f}"
        print(f"| {row['label']} | {'given' if row['given'] else 'unknown'} | "
              f"{row['trainable']:,} | {row['stored']:,} | {lid} | {cer(row['counts']):.2f} | "
              + " | ".join(f"{c:.2f}" for c in by_lang) + " |")

    print("\nRelative CER change against the baseline (negative: fewer errors), 95% interval of "
          "the absolute difference with utterances as the unit (espnet_lalora.significance."
          "compare), and its two-sided p. One run each: the seed spread is not in these "
          "intervals (docs/results.md has the seeds).\n")
    print("| comparison | CER | baseline CER | relative change | 95% interval (points) | p |")
    print("|---|---|---|---|---|---|")
    for claim, i, j in CLAIMS:
        a, b = loaded[i], loaded[j]
        if a is None or b is None:
            continue
        ca, cb = cer(a["counts"]), cer(b["counts"])
        utts = sorted(set(a["counts"]) & set(b["counts"]))
        c = compare(np.array([[a["counts"][u][0] for u in utts]]),
                    np.array([[b["counts"][u][0] for u in utts]]),
                    np.array([a["counts"][u][1] for u in utts]))
        low, high, p = c["low"], c["high"], c["p"]
        change = f"{100.0 * (ca - cb) / cb:+.1f}%" if cb > 0 else "n/a"
        print(f"| {claim} | {ca:.2f} | {cb:.2f} | {change} | [{low:+.2f}, {high:+.2f}] | "
              f"{p:.3f} |")


if __name__ == "__main__":
    main()
