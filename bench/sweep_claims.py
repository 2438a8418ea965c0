"""The papers' claims judged on a recipe's records, beside an earlier report's verdicts
(docs/results/report_notes.yaml) and the other recipes' verdicts where they have records."""

from espnet_lalora.significance import ALPHA, adjust_family
from sweep_records import DECODINGS
from sweep_stats import comparison

MARGIN = 0.10  # "matches" / "no worse": within 10% of the baseline's CER
CLAIMS = [  # (claim, size, method, test set, baseline, kind); "" continues the claim above
    ("VO-LoRA matches raw LoRA with 27% of its parameters (Han et al.)", "full", "vo_lora",
     "test", "lora", "no worse"),
    ("", "full", "vo_lora", "ood", "lora", "no worse"),
    ("LA-LoRA with about 10% of the parameters is no worse than raw LoRA (Han et al.)", "full",
     "la_lora", "test", "lora", "no worse"),
    ("LA-LoRA generalizes: no worse out of domain (Han et al.)", "full", "la_lora", "ood",
     "lora", "no worse"),
    ("S2-LoRA generalizes better out of domain than AdaLoRA (Liu et al.)", "full", "s2_lora",
     "ood", "adalora", "better"),
    ("Language experts gain 10-15% relative over one pooled LoRA (Li et al.)", "full",
     "lang_experts", "test", "lora", "better"),
    ("", "full", "lang_experts", "ood", "lora", "better"),
    ("... with the language detected (base-Whisper LID), not given", "full",
     "lang_experts:routed_lid", "ood", "lora", "better"),
    ("... merged into one model (uniform fusion), no routing", "full", "lang_experts:merged",
     "ood", "lora", "better"),
    ("With scarce data, fewer trainable parameters overfit less: VO-LoRA better than LoRA",
     "low", "vo_lora", "ood", "lora", "better"),
    ("... LA-LoRA better than LoRA", "low", "la_lora", "ood", "lora", "better"),
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


def measured_on(profile, claim) -> str:
    size = claim[1]
    return profile.claim_sets[claim[3]] + ("" if size == "full" else f", `{size}`")


def judge(profile, tables):
    """[(decoding, result) or (None, None) per claim]: each claim on the decoding both sides
    share, the recipe's where they have it; the claims are one family (Holm's p, intervals at
    Holm's level)."""
    where, results = [], {}
    for claim in CLAIMS:
        size, a, t, b = claim[1:5]
        rows = {d: tables.get(size, {}).get("rows", {}).get(d, {}) for d in DECODINGS}
        d = next((d for d in DECODINGS if a in rows[d] and b in rows[d]), None)
        where.append(d)
        if d:
            results[claim] = comparison(profile, rows[d], tables[size]["order"], a, b, t)
    adjust_family(list(results.values()))
    return [(d, results.get(claim)) for claim, d in zip(CLAIMS, where)]


def numbers(r) -> str:
    if r is None:
        return ""
    return (f"{r['diff']:+.2f} points ({100 * r['diff'] / r['base']:+.0f}%), "
            f"[{r['low']:+.2f}, {r['high']:+.2f}], p {r['p']:.3f}, Holm {r['p_holm']:.3f}")


def other_cell(claim, d, r) -> str:
    text = verdict(claim[5], r)
    return f"{text} ({d}; {r['diff']:+.2f} points, Holm {r['p_holm']:.3f})" if r else text


def previous_of(notes, profile) -> dict:
    """{(size, row, test): verdict} of the earlier report, and its notes."""
    prev = notes.get("previous_verdicts", {}).get(profile.name, {})
    return prev, {(v["size"], v["method"], v["test"]): v["verdict"]
                  for v in prev.get("verdicts", [])}


def intro(out, profile, judged, prev, others):
    measured = [r for _, r in judged if r]
    alpha = measured[0]["alpha"] if measured else ALPHA
    out.append("\n## The papers' claims\n")
    text = (f"Method minus baseline, on the decoding both were recorded with (the recipe's "
            f"where both have it). The claims are one family: p adjusted by Holm over the "
            f"{len(measured)} measured, and each interval at {100 * (1 - alpha):.2f}%, Holm's "
            f"level as in the tables above. \"Matches\" / \"no worse\": holds when the whole "
            f"interval lies below {MARGIN:.0%} of the baseline's CER, does not hold when it lies "
            f"above zero. \"Better\": holds when it lies below zero, does not hold when above. "
            f"Otherwise: not separable at this sample size.")
    if prev:
        text += f" Previous: the verdict of {prev['date']} ({prev['how']})."
    for other, _ in others:
        text += (f" Column `{other.name}`: the same claims judged on the records of "
                 f"{other.recipe} (a family of its own), where in-grammar means its "
                 f"{other.claim_sets['test']} and out-of-domain its {other.claim_sets['ood']}; "
                 f"the cell: verdict (decoding; difference, Holm p).")
    out.append(text + "\n")


def claims_section(out, profile, tables, notes, others=()):
    """The claims table; others: [(profile, judged)] of other recipes. Returns (results per
    claim, [(claim, before, after, why)] where a verdict changed)."""
    judged = judge(profile, tables)
    prev, before_of = previous_of(notes, profile)
    intro(out, profile, judged, prev, others)
    extra = "".join(f" {o.name} |" for o, _ in others)
    out += [f"| claim | measured on | decoding | verdict | previous | numbers |{extra}",
            "|---|---|---|---|---|---|" + "---|" * len(others)]
    changed = []
    for i, (claim, (d, r)) in enumerate(zip(CLAIMS, judged)):
        text = verdict(claim[5], r)
        before = before_of.get((claim[1], claim[2], claim[3]), "")
        mark = ""
        if r and before and before != text:
            mark = " (**changed**)"
            changed.append((claim, before, text, why_changed(tables, d, claim, prev)))
        cells = "".join(f" {other_cell(claim, *j[i])} |" for _, j in others)
        out.append(f"| {claim[0]} | {measured_on(profile, claim)} | {d or ''} | {text} | "
                   f"{before}{mark} | {numbers(r)} |{cells}")
    return [r for _, r in judged], changed


def why_changed(tables, d, claim, prev) -> str:
    """What differs from the earlier comparison: the runs (learning rate, decoding) or only
    the statistics."""
    info = tables[claim[1]]["info"]
    moved = [f"{m} now at learning rate {info[m][0]:g} ({info[m][1]})"
             for m in (claim[2].split(":")[0], claim[4]) if m in info and info[m][0] != prev["lr"]]
    if d == "recipe":
        moved.append("decoded as the recipe decodes")
    if moved:
        return "other runs: " + ", ".join(moved) + "."
    return f"the same runs and decoding; the statistics: {prev['statistics']}."


def changed_section(out, profile, changed, notes):
    """The verdicts that changed since the earlier report, each with why."""
    if changed:
        prev, _ = previous_of(notes, profile)
        out.append(f"\nVerdicts changed since {prev['date']}, and why:\n")
        out += [f"- {claim_name(profile, c)} ({measured_on(profile, c)}): {before} -> {after}: "
                f"{why}" for c, before, after, why in changed]


def claim_name(profile, claim) -> str:
    """The claim's words; a continuation row ("") by what it is measured on."""
    return claim[0] or measured_on(profile, claim)
