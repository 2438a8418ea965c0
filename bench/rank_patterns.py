"""Do S2-LoRA, AdaLoRA and LA-LoRA find the same modules? The S2-LoRA paper reports that its
learned rank distribution resembles AdaLoRA's; LA-LoRA's stage-7 importance is a third opinion
of which modules matter. This reads the three patterns of one recipe's experiments and writes
one figure with the three heat maps (same axes) and the rank correlations (Spearman) between
them, per module (96 on Whisper base) and per module type (encoder/decoder x type, summed over
layers), as a table and as JSON.

    python bench/rank_patterns.py --exp egs2/mini_multi/asr1/exp --out docs/rank_patterns

Inputs: ``<exp>/asr_train_la_lora/la_selection.json`` (stage 7),
``<exp>/asr_train_{s2_lora,adalora}/export/rank_pattern.json`` (stage 9).
"""

import argparse
import json
from collections import defaultdict
from pathlib import Path

from scipy.stats import spearmanr

from espnet_lalora.methods.module_grid import Panel, parse_module, plot_panels


def load(exp: Path, tags):
    la = json.loads((exp / f"asr_{tags['la']}" / "la_selection.json").read_text())
    patterns = {m: json.loads((exp / f"asr_{tags[m]}" / "export" / "rank_pattern.json")
                              .read_text()) for m in ("s2", "adalora")}
    series = {
        "LA-LoRA importance": {r["name"]: r["score"] for r in la["modules"]},
        "S2-LoRA kept rank": {r["name"]: r["rank"] for r in patterns["s2"]["modules"]},
        "S2-LoRA L1 of lambda": {r["name"]: r["l1"] for r in patterns["s2"]["modules"]},
        "AdaLoRA kept rank": {r["name"]: r["rank"] for r in patterns["adalora"]["modules"]},
        "AdaLoRA L1 of E": {r["name"]: r["l1"] for r in patterns["adalora"]["modules"]},
    }
    return la, patterns, series


def by_type(values):
    out = defaultdict(float)
    for name, v in values.items():
        part, _, kind = parse_module(name)
        out[f"{part} {kind}"] += v
    return dict(out)


def correlations(series):
    names = list(series)
    rows = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if a.split()[0] == b.split()[0]:
                continue  # two views of one method
            common = sorted(set(series[a]) & set(series[b]))
            rho, p = spearmanr([series[a][n] for n in common], [series[b][n] for n in common])
            ta, tb = by_type(series[a]), by_type(series[b])
            kinds = sorted(set(ta) & set(tb))
            rho_t, p_t = spearmanr([ta[k] for k in kinds], [tb[k] for k in kinds])
            rows.append({"a": a, "b": b, "modules": len(common), "spearman": rho, "p": p,
                         "types": len(kinds), "spearman_types": rho_t, "p_types": p_t})
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp", type=Path, required=True, help="a recipe's exp/ folder")
    parser.add_argument("--out", type=Path, required=True, help="output stem (.png, .json)")
    parser.add_argument("--la", default="train_la_lora", help="asr_tag of the LA-LoRA run")
    parser.add_argument("--s2", default="train_s2_lora", help="asr_tag of the S2-LoRA run")
    parser.add_argument("--adalora", default="train_adalora", help="asr_tag of the AdaLoRA run")
    args = parser.parse_args()
    la, patterns, series = load(args.exp, {"la": args.la, "s2": args.s2,
                                           "adalora": args.adalora})
    s2, ada = patterns["s2"], patterns["adalora"]
    plot_panels([
        Panel(f"LA-LoRA (stage 7, {la['num_chosen']} chosen)", series["LA-LoRA importance"],
              "log10 importance", log=True, boxed=la["chosen"]),
        Panel(f"S2-LoRA ({s2['kept']} of {s2['of']} coefficients non-zero)",
              series["S2-LoRA kept rank"], "non-zero coefficients"),
        Panel(f"AdaLoRA ({ada['kept']} of {ada['of']} ranks kept)", series["AdaLoRA kept rank"],
              "kept rank"),
    ], args.out.with_suffix(".png"), title="Which modules matter: three methods, one recipe")
    rows = correlations(series)
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")
    print("| pattern A | pattern B | Spearman (96 modules) | p | Spearman (16 module types) | p |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['a']} | {r['b']} | {r['spearman']:.2f} | {r['p']:.2g} | "
              f"{r['spearman_types']:.2f} | {r['p_types']:.2g} |")
    print(f"\nwrote {args.out.with_suffix('.png')} and {args.out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
