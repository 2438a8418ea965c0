"""A recipe's report (docs/results.md, docs/results_<recipe>.md), its plot and the README's
findings paragraph, from the sweep's records only (bench/sweep.py runs the experiments).

  .venv/bin/python bench/sweep.py --report_only [--recipe asterisk]

Which runs stand for a method: sweep_records.standing_runs. Each decoding gets its own tables.
Statistics: espnet_lalora.significance (seeds at their own degrees of freedom, sentences as the
unit); a table of comparisons is one family: Holm-adjusted p-values, and intervals at the level
alpha / (comparisons in the table). The report's opening prose is docs/results/intro/<recipe>.md;
wording that carries the project's history is docs/results/report_notes.yaml.
"""

import json
import re
from pathlib import Path

import numpy as np
import yaml

from espnet_lalora.significance import ALPHA, adjust_family
from sweep_claims import CLAIMS, changed_section, claim_name, claims_section, judge, verdict
from sweep_plot import plot
from sweep_profiles import NUMBER_WORDS, ROOT
from sweep_records import (DECODING_LABELS, DECODINGS, GREEDY_DECODING, grid_of, load_tables)
from sweep_stats import comparison, has, mean_and_interval, mean_cer, matrix

NOTES = ROOT / "docs" / "results" / "report_notes.yaml"


def readme_markers(profile):
    """The README's findings block of a recipe: between these two lines."""
    if profile.name == "mini_multi":
        return ("<!-- sweep findings: written by bench/sweep.py --report_only from "
                "docs/results/runs -->", "<!-- end of sweep findings -->")
    return (f"<!-- sweep findings ({profile.name}): written by bench/sweep.py --recipe "
            f"{profile.name} --report_only -->", f"<!-- end of sweep findings ({profile.name}) -->")


def caption(notes, d: str) -> str:
    text = notes["decodings"][d]
    if d == "greedy":
        text += " (" + ", ".join(f"{k} {v}" for k, v in GREEDY_DECODING.items()
                                 if k != "batch_size") + ")"
    return text


def label(row: str) -> str:
    if ":" in row:
        method, name = row.split(":")
        return f"{method} ({DECODING_LABELS[name]})"
    return {"zero_shot": "zero-shot Whisper base", "lang_experts": "lang_experts (routed)"}.get(
        row, row)


def short(profile, test) -> str:
    """A set's display name without its `name`."""
    return profile.set_names[test].split(" (")[0]


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


def real_vs_zero_shot(profile, pairs, order, zero_real) -> str:
    """Forgetting: CER on the real-speech set relative to zero-shot Whisper's (1.0: no change)."""
    if zero_real is None or not has(profile, pairs, profile.real_set):
        return "-"
    return f"{mean_cer(profile, pairs, profile.real_set, order) / zero_real:.2f}x"


def cer_cells(profile, pairs, order) -> list:
    cells = []
    for t in profile.columns:
        if not has(profile, pairs, t):
            cells.append("-")
            continue
        mean, low, high = mean_and_interval(profile, pairs, t, order)
        cells.append(f"{mean:.2f} [{max(0, low):.1f}, {high:.1f}]")
    return cells


def cer_table(out, profile, rows, order, info, zero_real):
    head = ("| method | trainable | learning rate | seeds | "
            + " | ".join(f"CER {profile.set_names[t]}" for t in profile.columns)
            + " | real vs zero-shot | train s | peak MB |")
    out += [head, "|" + "---|" * (head.count("|") - 1)]
    for row, pairs in rows.items():
        cells = cer_cells(profile, pairs, order)
        train = [r.get("train_seconds") for r, _ in pairs if r.get("train_seconds")]
        peak = [r.get("peak_rss_mb") for r, _ in pairs if r.get("peak_rss_mb")]
        seeds = ",".join(str(r["seed"]) for r, _ in pairs) if row != "zero_shot" else "-"
        cost = (f" {np.median(train):.0f} |" if train else " |") + (
            f" {max(peak):,} |" if peak else " |")
        cells.append(real_vs_zero_shot(profile, pairs, order, zero_real))
        out.append(f"| {label(row)} | {trainable(pairs)} | {lr_cell(row, info)} | {seeds} | "
                   + " | ".join(cells) + " |" + cost)


def language_table(out, profile, rows, order):
    langs = sorted(set(order["test"]["langs"]))
    out.append(f"\nPer language, mean CER over seeds, {profile.lang_caption}:\n")
    out += ["| method | " + " | ".join(f"CER {l}" for l in langs) + " |",
            "|" + "---|" * (len(langs) + 1)]
    for row, pairs in rows.items():
        cells = []
        for lang in langs:
            pair = []
            for t in ("test", "ood"):
                _, lengths, _ = matrix(profile, pairs, t, order, lang)
                pair.append(f"{mean_cer(profile, pairs, t, order, lang):.2f}"
                            if len(lengths) else "-")
            cells.append(" / ".join(pair))
        out.append(f"| {label(row)} | " + " | ".join(cells) + " |")


def lid_table(out, profile, rows):
    routed = [row for row, pairs in rows.items() if ":" in row
              and all(r.get("lid_accuracy", {}).get(row.split(":")[1]) for r, _ in pairs)]
    if not routed:
        return
    sets = profile.test_sets
    out.append("\nLanguage identification of the decodings routed by it: utterances whose "
               "detected language is the right one, %, mean over seeds:\n")
    out += ["| decoding | " + " | ".join(profile.set_names[t] for t in sets) + " |",
            "|" + "---|" * (len(sets) + 1)]
    for row in routed:
        name = row.split(":")[1]
        cells = [f"{np.mean([r['lid_accuracy'][name][t] for r, _ in rows[row]]):.1f}"
                 if all(t in r["lid_accuracy"][name] for r, _ in rows[row]) else "-"
                 for t in sets]
        out.append(f"| {label(row)} | " + " | ".join(cells) + " |")


COMPARISON_NOTE = (
    "\nAgainst raw LoRA (`lora`) on the same utterances: difference of mean CER (negative: "
    "fewer errors than LoRA), relative to LoRA; p two-sided, then adjusted by Holm over the "
    "table's {n} comparisons; the intervals are Holm's too (each at {level:.2f}%: the level "
    "Holm leaves once it has rejected what it rejects; an interval excludes zero exactly where "
    "the Holm p is below 0.05); df: the degrees of freedom of the t (three seeds a side: 2 to 4 "
    "where the seeds carry the variance, more where the sentences do); **bold**: significant "
    "after correction.\n")


def comparison_table(out, profile, rows, order):
    if "lora" not in rows:
        return []
    plan = [(m, "lora", t) for m in rows if m not in ("lora", "zero_shot")
            for t in profile.columns if has(profile, rows[m], t) and has(profile, rows["lora"], t)]
    if not plan:
        return []
    results = adjust_family([comparison(profile, rows, order, *triple) for triple in plan])
    out.append(COMPARISON_NOTE.format(n=len(plan), level=100 * (1 - results[0]["alpha"])))
    out += ["| method | test set | CER difference (points) | relative | simultaneous interval "
            "| p | p (Holm) | df |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        rel = f"{100 * r['diff'] / r['base']:+.0f}%" if r["base"] > 0 else "n/a"
        diff = f"{r['diff']:+.2f}"
        if r["p_holm"] < ALPHA:
            diff = f"**{diff}**"
        seeds = "" if r["seeds_known"] else " (one seed: no seed spread)"
        out.append(f"| {label(r['a'])} | {profile.set_names[r['test']]} | {diff} | {rel} | "
                   f"[{r['low']:+.2f}, {r['high']:+.2f}]{seeds} | {r['p']:.3f} | "
                   f"{r['p_holm']:.3f} | {r['df']:.1f} |")
    return results


def grid_table(out, rec, by_method, order):
    tuned = [m for m in rec.profile.tuned if m in by_method and grid_of(by_method[m])]
    if not tuned or "dev" not in order:
        return
    rates = sorted({lr for m in tuned for lr in rec.lr_grid(m)})
    out.append(f"\nLearning rate per method, chosen on `dev` ({len(order['dev']['utts'])} "
               f"{rec.profile.claim_sets['test']} "
               f"utterances; the test sets play no part): CER % on dev of seed 1 at "
               f"each rate of the grid, as the recipe decodes; **bold**: chosen (the lowest).\n")
    out += ["| method | " + " | ".join(f"lr {lr:g}" for lr in rates) + " |",
            "|" + "---|" * (len(rates) + 1)]
    for m in tuned:
        grid = grid_of(by_method[m])
        chosen = rec.choose_lr(order, m, grid)
        cells = []
        for lr in rates:
            if lr not in rec.lr_grid(m):
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


def zero_shot_real(profile, table):
    """Zero-shot Whisper's CER on the real-speech set (the recipe's decoding where it has one)."""
    real = [(r, r["errors"].get("recipe") or r["errors"].get("greedy"))
            for r in table["zero_shot"]]
    real = [(r, e) for r, e in real if e and profile.real_set in e]
    return mean_cer(profile, real[:1], profile.real_set, table["order"]) if real else None


def size_intro(out, profile, size, table, zero_real):
    order, rows = table["order"], table["rows"]
    out.append(f"\n## Training size `{size}`: {profile.sizes[size].heading}\n")
    counts = ", ".join(f"`{t}` {len(order[t]['utts'])}" for t in profile.test_sets if t in order)
    sentences = len(set(matrix(profile, next(iter(rows["greedy"].values())), "ood", order)[2]))
    langs = len(set(order["test"]["langs"]))
    zero_note = (f" ({zero_real:.2f}, decoded as run.sh decodes it)" if zero_real is not None
                 else " (not recorded yet)")
    out.append(f"Test utterances: {counts}; the pooled out-of-domain sets hold {sentences} "
               f"distinct sentences{profile.ood_note}. CER % (sclite), mean over seeds [95% "
               f"interval: seeds and sentences]. Trainable: the parameters the method trains "
               f"(the experts: {NUMBER_WORDS[langs] if langs < 10 else langs} LoRAs, one per "
               f"language). Train s: median over seeds of stage 8's wall time, runs made in "
               f"several sessions on 2-core machines{spread_note(rows['greedy'])}; compare "
               f"training speed with `bench/train_step_bench.py` (docs/benchmarks.md) instead. "
               f"Real vs zero-shot: the CER on `{profile.real_set}` ({profile.real_note}) over "
               f"zero-shot Whisper's{zero_note}: above 1, {profile.real_worse}.\n")


def mixed_note(rows) -> str:
    """Said when the runs of a recipe-decoding table were decoded with different configs."""
    mixed = {json.dumps(r.get("decoding"), sort_keys=True) for pairs in rows.values()
             for r, _ in pairs if not r["first_sweep"]}
    if len(mixed) < 2:
        return ""
    return (f"**Mixed:** the runs of this table were decoded with {len(mixed)} different recipe "
            "decodings (conf/decode.yaml changed while the sweep ran); `bench/sweep.py "
            "--redecode` decodes them all again as the recipe decodes now.\n")


def size_section(out, rec, size, table, notes):
    """A size's tables, one set per decoding; sets table["comparisons"][decoding]."""
    profile, order, info = rec.profile, table["order"], table["info"]
    zero_real = zero_shot_real(profile, table)
    size_intro(out, profile, size, table, zero_real)
    grid_table(out, rec, table["by_method"], order)
    table["comparisons"] = {}
    for d in DECODINGS:
        rows = table["rows"][d]
        if not any(row != "zero_shot" for row in rows):
            continue
        out.append(f"\n### Decoded {caption(notes, d)}\n")
        if d == "recipe" and mixed_note(rows):
            out.append(mixed_note(rows))
        if d == "recipe" and "zero_shot" in rows and rows["zero_shot"][0][0]["first_sweep"]:
            out.append(notes["legacy_zero_shot"] + "\n")
        cer_table(out, profile, rows, order, info, zero_real)
        language_table(out, profile, rows, order)
        lid_table(out, profile, rows)
        table["comparisons"][d] = comparison_table(out, profile, rows, order)


def findings(profile, tables, claims_found, notes) -> str:
    """The README's paragraph on the sweep, every number from the records."""
    if "full" not in tables:
        return "No sweep recorded yet."
    full = tables["full"]
    d = "recipe" if "lora" in full["rows"]["recipe"] else "greedy"
    rows, order = full["rows"][d], full["order"]
    runs = sum(len(pairs) for table in tables.values() for row, pairs in
               table["rows"]["greedy"].items() if ":" not in row and row != "zero_shot")
    cells = [f"{label(row)} {mean_cer(profile, pairs, 'test', order):.2f} / "
             f"{mean_cer(profile, pairs, 'ood', order):.1f}"
             for row, pairs in rows.items() if ":" not in row]
    significant = [r for r in full["comparisons"].get(d, [])
                   if r["p_holm"] < ALPHA and r["test"] in ("test", "ood")]
    named = {sign: [f"{label(r['a'])} {short(profile, r['test'])} ({r['diff']:+.1f})"
                    for r in significant if (r["diff"] > 0) == (sign > 0)] for sign in (1, -1)}
    held = [claim_name(profile, c) for c, r in zip(CLAIMS, claims_found)
            if verdict(c[5], r) == "holds"]
    return (f"What the committed sweep found ({runs} runs recorded; `full` size, decoded "
            f"{notes['decodings'][d].split(' (')[0]}; CER %, {profile.lang_caption}): "
            + "; ".join(cells) + ". Significantly worse than raw LoRA after Holm's correction "
            f"({profile.claim_sets['test']} or {profile.claim_sets['ood']}"
            f"{' pooled' if len(profile.ood) > 1 else ''}): "
            f"{', '.join(named[1]) or 'none'}. Significantly better: "
            f"{', '.join(named[-1]) or 'none'}. Claims that hold: {len(held)} of {len(CLAIMS)}. "
            f"Generated from the records by `bench/sweep.py --report_only`; details and the "
            f"claims in `{profile.report}`.")


def readme_block(readme: Path, markers):
    """The findings block's pattern in the README; a README without one stops the sweep."""
    start, end = markers
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if not readme.is_file():
        raise SystemExit(f"error: --readme {readme}: no such file")
    if not pattern.search(readme.read_text()):
        raise SystemExit(f"error: --readme: no '{start}' ... '{end}' block in {readme} to "
                         f"write the findings into")
    return pattern


def update_readme(readme: Path, paragraph: str, markers):
    start, end = markers
    pattern = readme_block(readme, markers)
    text = readme.read_text()
    readme.write_text(pattern.sub(lambda _: f"{start}\n{paragraph}\n{end}", text))


def other_verdicts(rec):
    """[(profile, judged claims)] of the other recipes that have records."""
    found = []
    for other in rec.others():
        tables = load_tables(other)
        if tables:
            found.append((other.profile, judge(other.profile, tables)))
    return found


def write_report(rec, report: Path, readme: Path = None):
    """Writes the report and its plot (and the README's findings); returns the findings."""
    notes = yaml.safe_load(NOTES.read_text())
    out = [f"# {rec.profile.title}", ""] + rec.profile.intro.read_text().split("\n")
    tables = load_tables(rec)
    for size, table in tables.items():
        size_section(out, rec, size, table, notes)
    found, changed = claims_section(out, rec.profile, tables, notes, other_verdicts(rec))
    changed_section(out, rec.profile, changed, notes)
    report.write_text("\n".join(out) + "\n")
    if tables:
        plot(rec.profile, tables, report.with_suffix(".png"))
    paragraph = findings(rec.profile, tables, found, notes)
    if readme is not None:
        update_readme(readme, paragraph, readme_markers(rec.profile))
    return paragraph
