"""docs/results.md, docs/results.png and the README's findings paragraph, from the sweep's records
(bench/sweep.py runs the experiments and writes the records; this file only reads them).

  .venv/bin/python bench/sweep.py --report_only

Which runs stand for a method: the seeds at the learning rate its grid chose on dev, once the
grid is complete; until then the first sweep's runs (learning rate 1e-3, greedy decoding only).
Each decoding gets its own tables: the runs recorded since 2026-12-07 were decoded as the recipe
decodes and, a second time, greedily as the first sweep decoded every run, so that old and new
runs compare in the greedy tables. Statistics: espnet_lalora.significance (seeds at their own
degrees of freedom, sentences as the unit); a table of comparisons is one family: Holm-adjusted
p-values, and intervals at the level alpha / (comparisons in the table).
"""

import json
import re
from pathlib import Path

import numpy as np

from espnet_lalora.significance import ALPHA, adjust_family, cer_interval, compare, run_cers
from sweep import (DECODING_LABELS, GREEDY_DECODING, METHODS, OOD, OTHER_DECODINGS,
                   SET_NAMES, SIZES, TEST_SETS, TUNED, choose_lr, lr_grid, read_json)

DECODINGS = {
    "recipe": "as the recipe decodes it (conf/decode.yaml: beam 5, openai-whisper's ranking)",
    "greedy": "greedily, as the first sweep decoded every run ("
              + ", ".join(f"{k} {v}" for k, v in GREEDY_DECODING.items() if k != "batch_size")
              + ")"}
MARGIN = 0.10  # "matches" / "no worse": within 10% of the baseline's CER
README_START = ("<!-- sweep findings: written by bench/sweep.py --report_only from "
                "docs/results/runs -->")
README_END = "<!-- end of sweep findings -->"
# The claims table's verdicts in the report of 2026-12-06 (the seed-and-utterance bootstrap,
# intervals not corrected for the table's other claims, every method at learning rate 1e-3):
# shown beside today's, so that a changed verdict is seen.
PREVIOUS_VERDICTS = {
    ("vo_lora", "test"): "not separable", ("vo_lora", "ood"): "not separable",
    ("la_lora", "test"): "does not hold", ("la_lora", "ood"): "does not hold",
    ("s2_lora", "ood"): "does not hold (worse)",
    ("lang_experts", "test"): "not separable", ("lang_experts", "ood"): "not separable",
    ("lang_experts:routed_lid", "ood"): "does not hold (worse)",
    ("lang_experts:merged", "ood"): "does not hold (worse)",
    ("low vo_lora", "ood"): "does not hold (worse)",
    ("low la_lora", "ood"): "does not hold (worse)",
}


# ---------------------------------------------------------------- reading the records

def normalize(record: dict) -> dict:
    """One run, whatever its age: errors per decoding ('recipe', 'greedy'), the same for the
    method's other decodings. Records without a 'decoding' are the first sweep's: greedy only."""
    first_sweep = "decoding" not in record
    if first_sweep:
        errors = {"greedy": record["errors"]}
        variants = {name: {"greedy": e} for name, e in record.get("decodings", {}).items()}
    else:
        errors = {"recipe": record["errors"], "greedy": record.get("greedy_errors")}
        variants = {name: {"recipe": e} for name, e in record.get("decodings", {}).items()}
    return dict(record, first_sweep=first_sweep, lr=record.get("lr", 1e-3), errors=errors,
                variants=variants)


def load_size(folder: Path):
    """(order, {method: [runs]}, [zero-shot runs]) of one training size."""
    if not (folder / "test_sets.json").is_file():
        return None, {}, []
    order = read_json(folder / "test_sets.json")
    by_method, zero_shot = {}, []
    for path in sorted(folder.glob("*.json")):
        if path.name == "test_sets.json":
            continue
        run = normalize(read_json(path))
        if run["method"] == "zero_shot":
            zero_shot.append(run)
        else:
            by_method.setdefault(run["method"], []).append(run)
    return order, by_method, zero_shot


def grid_of(runs) -> dict:
    """{learning rate: seed-1 run} of the runs recorded since the grid existed."""
    return {r["lr"]: r for r in runs if not r["first_sweep"] and r["seed"] == 1}


def standing_runs(method: str, runs, order):
    """(runs, learning rate, how it was set) that stand for a method in the tables."""
    lr = choose_lr(order, method, grid_of(runs))
    if lr is not None:
        return [r for r in runs if not r["first_sweep"] and r["lr"] == lr], lr, "chosen on dev"
    first = [r for r in runs if r["first_sweep"]]
    if first:
        return first, 1e-3, "LoRA's"
    by_lr = {}
    for r in runs:
        by_lr.setdefault(r["lr"], []).append(r)
    lr = max(by_lr, key=lambda k: len(by_lr[k]))
    return by_lr[lr], lr, "the config's"


def zero_shot_for(zero_shot, d):
    """The zero-shot run of a decoding's table: the one decoded that way, else the other (its
    only decoding is run.sh's greedy one, near the first sweep's)."""
    run = min(zero_shot, key=lambda r: r["errors"].get(d) is None)
    return run, run["errors"].get(d) or next(e for e in run["errors"].values() if e)


def rows_of(order, by_method, zero_shot):
    """{decoding: {row label: [(run, errors)]}}: what each table shows, in METHODS order, each
    method followed by its other decodings."""
    rows = {d: {} for d in DECODINGS}
    info = {}
    for d in DECODINGS:
        if zero_shot:
            rows[d]["zero_shot"] = [zero_shot_for(zero_shot, d)]
    for method in [m for m in METHODS if m in by_method] + sorted(set(by_method) - set(METHODS)):
        runs, lr, how = standing_runs(method, by_method[method], order)
        info[method] = (lr, how)
        names = [""] + list(OTHER_DECODINGS.get(method, {}))
        for d in DECODINGS:
            for name in names:
                pairs = [(r, r["variants"].get(name, {}).get(d) if name else r["errors"].get(d))
                         for r in runs]
                if pairs and all(e is not None for _, e in pairs):
                    rows[d][f"{method}:{name}" if name else method] = pairs
    return rows, info


def has(pairs, test) -> bool:
    """Whether every run of a row decoded the set (all the out-of-domain sets for 'ood')."""
    return all(t in e for _, e in pairs for t in (OOD if test == "ood" else [test]))


def matrix(pairs, test, order, lang=None):
    """(errors: runs x utterances, lengths, sentences) of one test set ('ood': the
    out-of-domain sets pooled), optionally one language only."""
    tests = OOD if test == "ood" else [test]
    errors, lengths, sentences = [], [], []
    for t in tests:
        keep = [i for i, l in enumerate(order[t]["langs"]) if lang is None or l == lang]
        errors.append(np.array([[e[t][i] for i in keep] for _, e in pairs]))
        lengths.append(np.array([order[t]["lengths"][i] for i in keep]))
        # the sentence of each utterance; a set recorded before sentences were: its own utterances
        sentences.append([order[t]["sentences"][i] if "sentences" in order[t] else f"{t}:{i}"
                          for i in keep])
    return np.concatenate(errors, axis=1), np.concatenate(lengths), sum(sentences, [])


# ---------------------------------------------------------------- tables

def label(row: str) -> str:
    if ":" in row:
        method, name = row.split(":")
        return f"{method} ({DECODING_LABELS[name]})"
    return {"zero_shot": "zero-shot Whisper base", "lang_experts": "lang_experts (routed)"}.get(
        row, row)


def trainable(pairs) -> str:
    """The trainable count, per seed where it differs (LA-LoRA's selection depends on the seed)."""
    counts = [r["trainable"] for r, _ in pairs]
    if len(set(counts)) == 1:
        return f"{counts[0]:,}"
    return " / ".join(f"{c:,}" for c in counts) + " (per seed)"


def lr_cell(row, info) -> str:
    method = row.split(":")[0]
    if method not in info:
        return "-"
    lr, how = info[method]
    return f"{lr:g} ({how})"


def real_vs_zero_shot(pairs, order, zero_real) -> str:
    """Forgetting: CER on the real prompts relative to zero-shot Whisper's (1.0: no change)."""
    if zero_real is None or not has(pairs, "test_real"):
        return "-"
    errors, lengths, _ = matrix(pairs, "test_real", order)
    return f"{run_cers(errors, lengths).mean() / zero_real:.2f}x"


def cer_table(out, rows, order, info, zero_real):
    head = ("| method | trainable | learning rate | seeds | "
            + " | ".join(f"CER {SET_NAMES[t]}" for t in TEST_SETS + ["ood"])
            + " | real vs zero-shot | train s | peak MB |")
    out += [head, "|" + "---|" * (head.count("|") - 1)]
    for row, pairs in rows.items():
        cells = []
        for t in TEST_SETS + ["ood"]:
            if not has(pairs, t):
                cells.append("-")
                continue
            errors, lengths, sentences = matrix(pairs, t, order)
            low, high = cer_interval(errors, lengths, sentences)
            cells.append(f"{run_cers(errors, lengths).mean():.2f} [{max(0, low):.1f}, {high:.1f}]")
        train = [r.get("train_seconds") for r, _ in pairs if r.get("train_seconds")]
        peak = [r.get("peak_rss_mb") for r, _ in pairs if r.get("peak_rss_mb")]
        seeds = ",".join(str(r["seed"]) for r, _ in pairs) if row != "zero_shot" else "-"
        cost = (f" {np.median(train):.0f} |" if train else " |") + (
            f" {max(peak):,} |" if peak else " |")
        cells.append(real_vs_zero_shot(pairs, order, zero_real))
        out.append(f"| {label(row)} | {trainable(pairs)} | {lr_cell(row, info)} | {seeds} | "
                   + " | ".join(cells) + " |" + cost)


def language_table(out, rows, order):
    langs = sorted(set(order["test"]["langs"]))
    out.append("\nPer language, mean CER over seeds, in-grammar `test` / out-of-domain pooled:\n")
    out += ["| method | " + " | ".join(f"CER {l}" for l in langs) + " |",
            "|" + "---|" * (len(langs) + 1)]
    for row, pairs in rows.items():
        cells = []
        for lang in langs:
            pair = []
            for t in ("test", "ood"):
                errors, lengths, _ = matrix(pairs, t, order, lang)
                pair.append(f"{run_cers(errors, lengths).mean():.2f}" if len(lengths) else "-")
            cells.append(" / ".join(pair))
        out.append(f"| {label(row)} | " + " | ".join(cells) + " |")


def lid_table(out, rows):
    routed = [row for row, pairs in rows.items() if ":" in row
              and all(r.get("lid_accuracy", {}).get(row.split(":")[1]) for r, _ in pairs)]
    if not routed:
        return
    out.append("\nLanguage identification of the decodings routed by it: utterances whose "
               "detected language is the right one, %, mean over seeds:\n")
    out += ["| decoding | " + " | ".join(SET_NAMES[t] for t in TEST_SETS) + " |",
            "|" + "---|" * (len(TEST_SETS) + 1)]
    for row in routed:
        name = row.split(":")[1]
        cells = [f"{np.mean([r['lid_accuracy'][name][t] for r, _ in rows[row]]):.1f}"
                 if all(t in r["lid_accuracy"][name] for r, _ in rows[row]) else "-"
                 for t in TEST_SETS]
        out.append(f"| {label(row)} | " + " | ".join(cells) + " |")


def comparison(rows, order, a, b, t) -> dict:
    ea, lengths, sentences = matrix(rows[a], t, order)
    eb, _, _ = matrix(rows[b], t, order)
    return dict(compare(ea, eb, lengths, sentences), a=a, b=b, test=t,
                base=float(run_cers(eb, lengths).mean()))


def comparison_table(out, rows, order):
    if "lora" not in rows:
        return []
    plan = [(m, "lora", t) for m in rows if m not in ("lora", "zero_shot")
            for t in TEST_SETS + ["ood"] if has(rows[m], t) and has(rows["lora"], t)]
    if not plan:
        return []
    results = adjust_family([comparison(rows, order, *triple) for triple in plan])
    level = 1 - results[0]["alpha"]
    out.append(f"\nAgainst raw LoRA (`lora`) on the same utterances: difference of mean CER "
               f"(negative: fewer errors than LoRA), relative to LoRA; p two-sided, then "
               f"adjusted by Holm over the table's {len(plan)} comparisons; the intervals are "
               f"Holm's too (each at {100 * level:.2f}%: the level Holm leaves once it has "
               f"rejected what it rejects; an interval excludes zero exactly where the Holm p is "
               f"below 0.05); df: the degrees of freedom of the t (three seeds a side: 2 to 4 "
               f"where the seeds carry the variance, more where the sentences do); **bold**: "
               f"significant after correction.\n")
    out += ["| method | test set | CER difference (points) | relative | simultaneous interval "
            "| p | p (Holm) | df |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        rel = f"{100 * r['diff'] / r['base']:+.0f}%" if r["base"] > 0 else "n/a"
        diff = f"{r['diff']:+.2f}"
        if r["p_holm"] < ALPHA:
            diff = f"**{diff}**"
        seeds = "" if r["seeds_known"] else " (one seed: no seed spread)"
        out.append(f"| {label(r['a'])} | {SET_NAMES[r['test']]} | {diff} | {rel} | "
                   f"[{r['low']:+.2f}, {r['high']:+.2f}]{seeds} | {r['p']:.3f} | "
                   f"{r['p_holm']:.3f} | {r['df']:.1f} |")
    return results


def grid_table(out, size, by_method, order):
    tuned = [m for m in TUNED if m in by_method and grid_of(by_method[m])]
    if not tuned or "dev" not in order:
        return
    rates = sorted({lr for m in tuned for lr in lr_grid(m)})
    out.append(f"\nLearning rate per method, chosen on `dev` ({len(order['dev']['utts'])} "
               f"in-grammar utterances; the test sets play no part): CER % on dev of seed 1 at "
               f"each rate of the grid, as the recipe decodes; **bold**: chosen (the lowest).\n")
    out += ["| method | " + " | ".join(f"lr {lr:g}" for lr in rates) + " |",
            "|" + "---|" * (len(rates) + 1)]
    for m in tuned:
        grid = grid_of(by_method[m])
        chosen = choose_lr(order, m, grid)
        cells = []
        for lr in rates:
            if lr not in lr_grid(m):
                cells.append("")
            elif lr not in grid:
                cells.append("(to run)")
            else:
                errors = grid[lr]["errors"]["recipe"]["dev"]
                cell = f"{100 * sum(errors) / sum(order['dev']['lengths']):.2f}"
                cells.append(f"**{cell}**" if lr == chosen else cell)
        out.append(f"| {m} | " + " | ".join(cells) + " |")


def spread_note(rows):
    """The widest range of training seconds one method had over its seeds, as a caution."""
    spans = [(max(t) / min(t), m, min(t), max(t)) for m, pairs in rows.items() if ":" not in m
             for t in [[r["train_seconds"] for r, _ in pairs if r.get("train_seconds")]]
             if len(t) > 1]
    if not spans:
        return ""
    _, m, low, high = max(spans)
    return f" (one method's seeds took {low:.0f}-{high:.0f} s: {m})"


def size_section(out, size, order, by_method, zero_shot):
    rows, info = rows_of(order, by_method, zero_shot)
    opts = SIZES[size]
    real = [(r, r["errors"].get("recipe") or r["errors"].get("greedy")) for r in zero_shot]
    real = [(r, e) for r, e in real if e and "test_real" in e]
    zero_real = run_cers(*matrix(real[:1], "test_real", order)[:2]).mean() if real else None
    zero_note = (f" ({zero_real:.2f}, decoded as run.sh decodes it)" if real
                 else " (not recorded yet)")
    out.append(f"\n## Training size `{size}`: {opts['per_lang']} utterances per language, "
               f"{opts['epochs']} epochs\n")
    counts = ", ".join(f"`{t}` {len(order[t]['utts'])}" for t in TEST_SETS if t in order)
    sentences = len(set(matrix(next(iter(rows["greedy"].values())), "ood", order)[2]))
    out.append(f"Test utterances: {counts}; the pooled out-of-domain sets hold {sentences} "
               f"distinct sentences (`test_room` and `test_engine` read `test`'s again). CER % "
               f"(sclite), mean over seeds [95% interval: seeds and sentences]. Trainable: the "
               f"parameters the method trains (the experts: four LoRAs, one per language). Train "
               f"s: median over seeds of stage 8's wall time, runs made in several sessions on "
               f"2-core machines{spread_note(rows['greedy'])}; compare training speed with "
               f"`bench/train_step_bench.py` (docs/benchmarks.md) instead. Real vs zero-shot: "
               f"the CER on `test_real` (real recorded speech, Asterisk telephone prompts) over "
               f"zero-shot Whisper's{zero_note}: above 1, fine-tuning on synthetic speech made "
               f"real speech worse.\n")
    grid_table(out, size, by_method, order)
    results = {}
    for d, caption in DECODINGS.items():
        if not any(row != "zero_shot" for row in rows[d]):
            continue
        out.append(f"\n### Decoded {caption}\n")
        if d == "recipe":
            mixed = {json.dumps(r.get("decoding"), sort_keys=True): r for pairs in
                     rows[d].values() for r, _ in pairs if not r["first_sweep"]}
            if len(mixed) > 1:
                out.append(f"**Mixed:** the runs of this table were decoded with {len(mixed)} "
                           "different recipe decodings (conf/decode.yaml changed while the sweep "
                           "ran); `bench/sweep.py --redecode` decodes them all again as the "
                           "recipe decodes now.\n")
        if d == "recipe" and "zero_shot" in rows[d] and rows[d]["zero_shot"][0][0]["first_sweep"]:
            out.append("The zero-shot row was decoded by the first sweep (greedy, 30-s padded, "
                       "as run.sh decodes zero-shot Whisper).\n")
        cer_table(out, rows[d], order, info, zero_real)
        language_table(out, rows[d], order)
        lid_table(out, rows[d])
        results[d] = dict(rows=rows[d], comparisons=comparison_table(out, rows[d], order))
    return dict(results, info=info)


# ---------------------------------------------------------------- the papers' claims

CLAIMS = [  # (claim, measured on, size, method, test set, baseline, kind)
    ("VO-LoRA matches raw LoRA with 27% of its parameters (Han et al.)", "in-grammar", "full",
     "vo_lora", "test", "lora", "no worse"),
    ("", "out-of-domain", "full", "vo_lora", "ood", "lora", "no worse"),
    ("LA-LoRA with about 10% of the parameters is no worse than raw LoRA (Han et al.)",
     "in-grammar", "full", "la_lora", "test", "lora", "no worse"),
    ("LA-LoRA generalizes: no worse out of domain (Han et al.)", "out-of-domain", "full",
     "la_lora", "ood", "lora", "no worse"),
    ("S2-LoRA generalizes better out of domain than AdaLoRA (Liu et al.)", "out-of-domain",
     "full", "s2_lora", "ood", "adalora", "better"),
    ("Language experts gain 10-15% relative over one pooled LoRA (Li et al.)", "in-grammar",
     "full", "lang_experts", "test", "lora", "better"),
    ("", "out-of-domain", "full", "lang_experts", "ood", "lora", "better"),
    ("... with the language detected (base-Whisper LID), not given", "out-of-domain", "full",
     "lang_experts:routed_lid", "ood", "lora", "better"),
    ("... merged into one model (uniform fusion), no routing", "out-of-domain", "full",
     "lang_experts:merged", "ood", "lora", "better"),
    ("With scarce data, fewer trainable parameters overfit less: VO-LoRA better than LoRA",
     "out-of-domain, `low`", "low", "vo_lora", "ood", "lora", "better"),
    ("... LA-LoRA better than LoRA", "out-of-domain, `low`", "low", "la_lora", "ood", "lora",
     "better"),
]


def verdict(kind: str, r) -> str:
    if r is None:
        return "not run yet"
    if kind == "no worse" and r["high"] < MARGIN * r["base"]:
        return "holds"
    if kind == "better" and r["high"] < 0:
        return "holds"
    if r["low"] > 0:
        return "does not hold" if kind == "no worse" else "does not hold (worse)"
    return "not separable"


def claims_section(out, tables):
    """Each claim on the decoding both sides share, the recipe's where they have it; the claims
    are one family (intervals at alpha / claims, Holm's p)."""
    plan, where = [], []
    for claim in CLAIMS:
        size, a, t, b = claim[2], claim[3], claim[4], claim[5]
        found = None
        for d in DECODINGS:
            rows = tables.get(size, {}).get(d, {}).get("rows", {})
            if a in rows and b in rows:
                found = (size, d)
                break
        where.append(found)
        if found:
            plan.append((found, (a, b, t)))
    results = {(w,) + triple: dict(comparison(tables[w[0]][w[1]]["rows"], tables[w[0]]["order"],
                                              *triple)) for w, triple in plan}
    adjust_family(list(results.values()))
    found = [results[(w, claim[3], claim[5], claim[4])] if w else None
             for claim, w in zip(CLAIMS, where)]
    alpha = next(iter(results.values()))["alpha"] if results else ALPHA
    out.append("\n## The papers' claims\n")
    out.append(f"Method minus baseline, on the decoding both were recorded with (the recipe's "
               f"where both have it). The claims are one family: p adjusted by Holm over the "
               f"{len(results)} measured, and each interval at {100 * (1 - alpha):.2f}%, Holm's "
               f"level as in the tables above. \"Matches\" / \"no worse\": holds when the whole "
               f"interval lies "
               f"below {MARGIN:.0%} of the baseline's CER, does not hold when it lies above zero. "
               f"\"Better\": holds when it lies below zero, does not hold when above. Otherwise: "
               f"not separable at this sample size. Previous: the verdict of 2026-12-06 (a "
               f"bootstrap that took three seeds' spread as known, utterances as the unit, "
               f"intervals not corrected, every method at learning rate 1e-3).\n")
    out += ["| claim | measured on | decoding | verdict | previous | numbers |",
            "|---|---|---|---|---|---|"]
    changed = []
    for claim, w, r in zip(CLAIMS, where, found):
        text = verdict(claim[6], r)
        key = (claim[3] if claim[2] == "full" else f"{claim[2]} {claim[3]}", claim[4])
        before = PREVIOUS_VERDICTS.get(key, "")
        numbers = ""
        if r:
            numbers = (f"{r['diff']:+.2f} points ({100 * r['diff'] / r['base']:+.0f}%), "
                       f"[{r['low']:+.2f}, {r['high']:+.2f}], p {r['p']:.3f}, Holm "
                       f"{r['p_holm']:.3f}")
        mark = ""
        if r and before and before != text:
            mark = " (**changed**)"
            changed.append((claim, before, text, why_changed(tables, w, claim)))
        out.append(f"| {claim[0]} | {claim[1]} | {w[1] if w else ''} | {text} | {before}{mark} "
                   f"| {numbers} |")
    return found, changed


def why_changed(tables, where, claim) -> str:
    """What differs from the comparison of 2026-12-06: the runs (learning rate, decoding) or
    only the statistics."""
    size, d = where
    info = tables[size]["info"]
    moved = [f"{m} now at learning rate {info[m][0]:g} ({info[m][1]})"
             for m in (claim[3].split(":")[0], claim[5]) if m in info and info[m][0] != 1e-3]
    if d == "recipe":
        moved.append("decoded as the recipe decodes")
    if moved:
        return "other runs: " + ", ".join(moved) + "."
    return ("the same runs and decoding; the statistics: the seed spread at its real degrees of "
            "freedom, sentences as the unit, and the interval corrected for the other claims.")


# ---------------------------------------------------------------- plot and README

def plot(tables, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    zero_shot = {}
    for ax, test in zip(axes, ["test", "ood"]):
        for size, marker, color in (("full", "o", "C0"), ("low", "s", "C3")):
            if size not in tables:
                continue
            rows, order = tables[size]["greedy"]["rows"], tables[size]["order"]
            for row, pairs in rows.items():
                if ":" in row:  # another decoding of a method: same parameters
                    continue
                errors, lengths, sentences = matrix(pairs, test, order)
                mean = run_cers(errors, lengths).mean()
                if row == "zero_shot":  # far above the others: named in the title
                    zero_shot[test] = mean
                    continue
                low, high = cer_interval(errors, lengths, sentences)
                x = np.mean([r["trainable"] for r, _ in pairs])
                ax.errorbar(x, mean, yerr=[[max(0, mean - low)], [max(0, high - mean)]],
                            fmt=marker, capsize=3, color=color)
                ax.annotate(row + ("" if size == "full" else " (low)"), (x, mean),
                            textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("trainable parameters")
        ax.set_ylabel("CER % (mean over seeds, 95% interval:\nseeds and sentences)", fontsize=9)
        ax.set_title(SET_NAMES[test].replace("`", "") + (
            f" (zero-shot Whisper base: {zero_shot[test]:.1f})" if test in zero_shot else ""),
            fontsize=10)
        ax.grid(alpha=0.3)
    fig.suptitle("Greedy decoding; blue circles: full training set; red squares: low-resource "
                 "(25 per language)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def findings(tables, claims_found) -> str:
    """The README's paragraph on the sweep, every number from the records."""
    if "full" not in tables:
        return "No sweep recorded yet."
    full = tables["full"]
    d = "recipe" if "lora" in full.get("recipe", {}).get("rows", {}) else "greedy"
    rows, order = full[d]["rows"], full["order"]
    runs = sum(len(pairs) for size in tables.values() for row, pairs in
               size.get("greedy", {}).get("rows", {}).items()
               if ":" not in row and row != "zero_shot")
    cells = []
    for row, pairs in rows.items():
        if ":" in row:
            continue
        cers = [run_cers(*matrix(pairs, t, order)[:2]).mean() for t in ("test", "ood")]
        cells.append(f"{label(row)} {cers[0]:.2f} / {cers[1]:.1f}")
    worse = [f"{label(r['a'])} {SET_NAMES[r['test']].split(' (')[0]} ({r['diff']:+.1f})"
             for r in full[d]["comparisons"] if r["p_holm"] < ALPHA and r["diff"] > 0
             and r["test"] in ("test", "ood")]
    better = [f"{label(r['a'])} {SET_NAMES[r['test']].split(' (')[0]} ({r['diff']:+.1f})"
              for r in full[d]["comparisons"] if r["p_holm"] < ALPHA and r["diff"] < 0
              and r["test"] in ("test", "ood")]
    held = [c[0] or c[1] for c, r in zip(CLAIMS, claims_found) if verdict(c[6], r) == "holds"]
    return (f"What the committed sweep found ({runs} runs recorded; `full` size, decoded "
            f"{DECODINGS[d].split(' (')[0]}; CER %, in-grammar `test` / out-of-domain pooled): "
            + "; ".join(cells) + ". Significantly worse than raw LoRA after Holm's correction "
            f"(in-grammar or out-of-domain pooled): {', '.join(worse) or 'none'}. Significantly "
            f"better: {', '.join(better) or 'none'}. Claims that hold: "
            f"{len(held)} of {len(CLAIMS)}. Generated from the records by "
            f"`bench/sweep.py --report_only`; details and the claims in `docs/results.md`.")


def update_readme(readme: Path, paragraph: str):
    text = readme.read_text()
    pattern = re.compile(re.escape(README_START) + r".*?" + re.escape(README_END), re.S)
    if not pattern.search(text):
        raise SystemExit(f"error: {readme}: no '{README_START}' ... '{README_END}' block to "
                         f"write the findings into")
    readme.write_text(pattern.sub(lambda _: f"{README_START}\n{paragraph}\n{README_END}", text))


def write_report(records: Path, report: Path, readme: Path = None):
    out = ["# Method comparison: mini_multi, seeds and out-of-domain test sets", "",
           "Made by `bench/sweep.py` from the runs recorded in `docs/results/runs/`; the "
           "commands that run them and write this page:", "",
           "    .venv/bin/python bench/sweep.py --sizes full --methods lora,la_lora,s2_lora,"
           "bitfit --tune_lr default", "    .venv/bin/python bench/sweep.py --report_only", "",
           "Every run is `./run.sh --method <m> --seed <s>` of `egs2/mini_multi/asr1`, in a copy "
           "of the recipe per training size. Test sets (local/synth_corpus.py): `test` is the "
           "in-grammar espeak-ng set; `test_free` new sentences outside the grammar (same "
           "held-out voice); `test_room` the `test` sentences read by two voice variants never "
           "in training, reverberated and with noise at 10 dB SNR; `test_engine` the `test` "
           "sentences of Japanese (Open JTalk, Mei) and English (flite). All of it is "
           "synthesized speech, but `test_real`: the English and Spanish test prompts of "
           "egs2/asterisk, real recordings of two professional voices (in the runs recorded "
           "since 2026-12-07). The plot: docs/results.png (greedy decoding, CER against "
           "trainable parameters).", "",
           "How uncertain a difference is: espnet_lalora/significance.py. Each method's seeds "
           "give the seed part of the variance at its real degrees of freedom (2 with three "
           "seeds); the sentences give the rest, resampled as sentences, because `test_room` and "
           "`test_engine` read `test`'s sentences again; a t with Welch-Satterthwaite degrees of "
           "freedom combines them. Simulated on test sets built like these, with equal methods "
           "(docs/significance_calibration.md, bench/significance_calibration.py), it calls them "
           "different at most at its nominal rate (3.4-4.9% for 5%), where the bootstrap used "
           "until 2026-12-06 did so up to 3.6 times as often; the price is power: with three "
           "seeds a 30% difference is found nine times in ten where seeds spread by 5%, one "
           "time in three where they spread by 15%. A table of comparisons is one family: "
           "Holm's p, and intervals that "
           "hold together.", ""]
    tables = {}
    for size in SIZES:
        order, by_method, zero_shot = load_size(records / size)
        if order is None or not by_method:
            continue
        tables[size] = dict(order=order, **size_section(out, size, order, by_method, zero_shot))
    found, changed = claims_section(out, tables)
    if changed:
        out.append("\nVerdicts changed since 2026-12-06, and why:\n")
        out += [f"- {c[0] or c[1]} ({c[1]}): {before} -> {after}: {why}"
                for c, before, after, why in changed]
    report.write_text("\n".join(out) + "\n")
    if tables:
        plot(tables, report.with_suffix(".png"))
    paragraph = findings(tables, found)
    if readme is not None:
        update_readme(readme, paragraph)
    return paragraph
