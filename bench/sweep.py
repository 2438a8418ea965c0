"""The method comparison: methods x seeds x training sizes through the recipe driver, recorded run
by run, then one report (docs/results.md) and one plot (docs/results.png) with each method's
error rates, their uncertainty, paired significance against raw LoRA and the papers' claims.

  .venv/bin/python bench/sweep.py                      # everything below, then the report
  .venv/bin/python bench/sweep.py --sizes full --seeds 1 --methods lora,vo_lora
  .venv/bin/python bench/sweep.py --report_only        # the report from the records so far

Each training size has its own copy of the recipe, <recipe>/sweep/<size>/ (its own data, dump
and exp; conf/ and local/ are the recipe's), so a sweep never touches the recipe's own runs.
A finished run is recorded in docs/results/runs/<size>/<method>_seed<N>.json: per test set and
utterance, the character errors (sclite), with the trainable parameters, training seconds and
peak memory. The sweep skips a run that has a record, and the driver's stamps skip the stages a
killed run had finished, so it resumes where it stopped, also on another machine (the records
are committed; the run folders are not). The report reads the records only.

Sizes (mini_multi's data.sh options; the test sets are 40 utterances per language each, larger
than run.sh's default so that methods can be told apart):
  full: 100 training utterances per language, 4 epochs (run.sh's training)
  low:  the first 25 of them (--train_subset 25), 16 epochs: as many updates as `full`, on a
        quarter of the data, the regime in which fewer trainable parameters should overfit less
"""

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from espnet_lalora.significance import (compare, holm, run_cers, sclite_utterances,  # noqa: E402
                                        cer_interval, seed_interval)

TEST_SETS = ["test", "test_free", "test_room", "test_engine"]
OOD = ["test_free", "test_room", "test_engine"]
SET_NAMES = {"test": "in-grammar (`test`)", "test_free": "other sentences (`test_free`)",
             "test_room": "unseen voices, room, 10 dB SNR (`test_room`)",
             "test_engine": "other synthesizer, ja + en (`test_engine`)", "ood": "out-of-domain, pooled"}
TEST_OPTS = "--test_per_lang 40 --free_per_lang 40 --room_per_lang 40 --engine_per_lang 40"
SIZES = {"full": dict(data=TEST_OPTS, train="", per_lang=100, epochs=4),
         "low": dict(data=f"--train_subset 25 {TEST_OPTS}", train="--max_epoch 16", per_lang=25,
                     epochs=16)}
METHODS = ["lora", "aw_lora", "vo_lora", "r1_lora", "la_lora", "s2_lora", "adalora", "bitfit",
           "lang_experts"]
DEFAULT_SIZES = {"full": METHODS, "low": ["lora", "vo_lora", "la_lora"]}
# The decoding that stands for the method: the experts routed by the given language.
DECODE_SUFFIX = {"lang_experts": "_routed"}
# A method's other decodings (stage 10 makes them anyway), recorded too and reported as rows of
# their own, "<method>:<name>": how much of the experts' result survives without the language
# being given, or merged into one model.
OTHER_DECODINGS = {"lang_experts": {"merged": "", "fused_learned": "_fused_learned",
                                    "routed_lid": "_routed_lid",
                                    "routed_lid_fused": "_routed_lid_fused"}}
DECODING_LABELS = {"merged": "uniform fusion", "fused_learned": "learned fusion",
                   "routed_lid": "routed by base-Whisper LID",
                   "routed_lid_fused": "routed by the fused experts' LID"}
RECORDS = ROOT / "docs" / "results" / "runs"
# Every run decodes alike, whatever conf/decode.yaml says today: greedy, with the length cap and
# repetition guard of the first recorded runs (224 tokens; any n-gram 4 times in a row).
DECODING = ("--beam_size 1 --ranking espnet --maxlenratio 0.5 --max_tokens 224 "
            "--repetition_guard 4 --repetition_span 0")


def log(message):
    print(f"[sweep {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def workdir(recipe: Path, size: str) -> Path:
    """<recipe>/sweep/<size>: run.sh pointing at the shared driver, the recipe's conf and local."""
    work = recipe / "sweep" / size
    work.mkdir(parents=True, exist_ok=True)
    for shared in ("conf", "local"):
        if not (work / shared).exists():
            (work / shared).symlink_to(recipe.resolve() / shared)
    text = (recipe / "run.sh").read_text().replace("../../../local/asr.sh",
                                                    str(ROOT / "local" / "asr.sh"))
    (work / "run.sh").write_text(text)
    (work / "run.sh").chmod(0o755)
    return work


def decode_dir(work: Path, exp: str, suffix: str = "") -> Path:
    """Stage 10's output for one decoding of an experiment (suffix: the method's decode mode)."""
    return work / "exp" / exp / f"decode_decode{suffix}"


def collect(work: Path, exp: str, suffix: str = "") -> dict:
    """Per test set, {utterance: errors} from stage 11's sclite alignments."""
    sets = {}
    for test in TEST_SETS:
        result = decode_dir(work, exp, suffix) / test / "score_cer" / "result.txt"
        if not result.is_file():
            raise FileNotFoundError(f"{result}: missing (did stage 11 run?)")
        sets[test] = {u: e for u, (e, _) in sclite_utterances(result).items()}
    return sets


def test_set_record(work: Path, exp: str) -> dict:
    """Per test set: utterances in order, their reference lengths and languages (once per size)."""
    out = {}
    for test in TEST_SETS:
        counts = sclite_utterances(decode_dir(work, exp) / test / "score_cer" / "result.txt")
        langs = dict(line.split() for line in
                     (work / "data" / test / "utt2lang").read_text().splitlines())
        utts = sorted(counts)
        out[test] = dict(utts=utts, lengths=[counts[u][1] for u in utts],
                         langs=[langs[u] for u in utts])
    return out


def write_json(path: Path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, separators=(",", ":")) + "\n")
    tmp.replace(path)


def record_run(work: Path, size: str, method: str, seed: int, seconds: float):
    exp = f"asr_train_{method}_seed{seed}"
    sets_file = RECORDS / size / "test_sets.json"
    order = json.loads(sets_file.read_text()) if sets_file.is_file() else None
    if order is None:
        order = test_set_record(work, exp)
        write_json(sets_file, order)
    errors = collect(work, exp, DECODE_SUFFIX.get(method, ""))
    params = yaml.safe_load((work / "exp" / exp / "export" / "params.yaml").read_text())
    resources_file = work / "exp" / exp / "train_resources.yaml"
    resources = yaml.safe_load(resources_file.read_text()) if resources_file.is_file() else {}
    def in_order(errors):
        return {t: [errors[t][u] for u in order[t]["utts"]] for t in TEST_SETS}

    record = dict(method=method, seed=seed, size=size, trainable=params["trainable"],
                  run_seconds=round(seconds), **resources, errors=in_order(errors))
    other = OTHER_DECODINGS.get(method, {})
    if other:
        made = {name: decode_dir(work, exp, suffix) for name, suffix in other.items()
                if decode_dir(work, exp, suffix).is_dir()}
        record["decodings"] = {name: in_order(collect(work, exp, other[name])) for name in made}
        # how often the language was detected right, where the decoding routed by it
        record["lid_accuracy"] = {
            name: {t: yaml.safe_load((folder / t / "lid_accuracy.yaml").read_text())["accuracy"]
                   for t in TEST_SETS}
            for name, folder in made.items() if (folder / "test" / "lid_accuracy.yaml").is_file()}
    write_json(RECORDS / size / f"{method}_seed{seed}.json", record)


def record_zero_shot(work: Path, size: str):
    errors = collect(work, "asr_zero_shot_whisper_base")
    order = json.loads((RECORDS / size / "test_sets.json").read_text())
    write_json(RECORDS / size / "zero_shot.json",
               dict(method="zero_shot", seed=0, size=size, trainable=0,
                    errors={t: [errors[t][u] for u in order[t]["utts"]] for t in TEST_SETS}))


def run_sweep(args, recipe: Path):
    # seed by seed: a sweep stopped early has every method on its first seeds
    plan = [(size, seed, method) for seed in args.seeds for size in args.sizes
            for method in (args.methods or DEFAULT_SIZES[size])]
    todo = [p for p in plan if not (RECORDS / p[0] / f"{p[2]}_seed{p[1]}.json").is_file()]
    log(f"{len(plan)} runs, {len(plan) - len(todo)} recorded already, {len(todo)} to run")
    failed, started = [], time.monotonic()
    for index, (size, seed, method) in enumerate(todo):
        work = workdir(recipe, size)
        opts = SIZES[size]
        # zero-shot Whisper once, on the full size's work dir (the test sets are the same)
        zero_shot = size == "full" and not (RECORDS / size / "zero_shot.json").is_file()
        cmd = ["./run.sh", "--method", method, "--seed", str(seed), "--local_data_opts",
               opts["data"], "--zero_shot", "true" if zero_shot else "false",
               "--inference_args", DECODING]
        if opts["train"]:
            cmd += ["--train_args", opts["train"]]
        cmd += args.run_args
        log(f"run {index + 1}/{len(todo)}: {size} {method} seed {seed}: "
            f"(cd {work} && {shlex.join(cmd)})")
        run_log = work / "exp" / "logs" / f"sweep_{method}_seed{seed}.log"
        run_log.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        with open(run_log, "w") as out:
            code = subprocess.run(cmd, cwd=work, stdout=out, stderr=subprocess.STDOUT).returncode
        seconds = time.monotonic() - t0
        if code != 0:
            failed.append(f"{size} {method} seed {seed} (log: {run_log})")
            log(f"FAILED after {seconds:.0f} s: {run_log}")
            continue
        record_run(work, size, method, seed, seconds)
        zero_shot_done = decode_dir(work, "asr_zero_shot_whisper_base").is_dir()
        if zero_shot_done and not (RECORDS / size / "zero_shot.json").is_file():
            record_zero_shot(work, size)
        done = index + 1
        eta = (time.monotonic() - started) / done * (len(todo) - done)
        log(f"done in {seconds:.0f} s; {len(todo) - done} to go, ETA {eta / 60:.0f} min")
    return failed


# ---------------------------------------------------------------- the report

def load_records(size: str):
    folder = RECORDS / size
    if not (folder / "test_sets.json").is_file():
        return None, {}
    order = json.loads((folder / "test_sets.json").read_text())
    runs = {}
    for path in sorted(folder.glob("*.json")):
        if path.name != "test_sets.json":
            record = json.loads(path.read_text())
            runs.setdefault(record["method"], []).append(record)
            for name, errors in record.get("decodings", {}).items():
                runs.setdefault(f"{record['method']}:{name}", []).append(
                    dict(record, method=f"{record['method']}:{name}", errors=errors,
                         lid_by_set=record.get("lid_accuracy", {}).get(name)))
    return order, runs


def method_order(runs):
    """zero-shot, then the methods in METHODS order, each followed by its other decodings."""
    order = ["zero_shot"]
    for m in METHODS:
        order += [m] + [f"{m}:{name}" for name in OTHER_DECODINGS.get(m, {})]
    return [m for m in order if m in runs]


def matrix(runs, test, order, lang=None):
    """(errors: runs x utterances, lengths) of one test set (all of the OOD sets for 'ood'),
    optionally one language only."""
    tests = OOD if test == "ood" else [test]
    cols_e, cols_n = [], []
    for t in tests:
        keep = [i for i, l in enumerate(order[t]["langs"]) if lang is None or l == lang]
        cols_e.append(np.array([[r["errors"][t][i] for i in keep] for r in runs]))
        cols_n.append(np.array([order[t]["lengths"][i] for i in keep]))
    return np.concatenate(cols_e, axis=1), np.concatenate(cols_n)


def fmt_ci(mean, half):
    return f"{mean:.2f}" if np.isnan(half) else f"{mean:.2f} ± {half:.2f}"


def method_label(method):
    if ":" in method:
        name, decoding = method.split(":")
        return f"{name} ({DECODING_LABELS[decoding]})"
    return {"zero_shot": "zero-shot Whisper base", "lang_experts": "lang_experts (routed)"}.get(
        method, method)


def spread_note(runs):
    """The widest range of training seconds one method had over its seeds, as a caution."""
    spans = [(max(t) / min(t), m, min(t), max(t)) for m, rs in runs.items() if ":" not in m
             for t in [[r["train_seconds"] for r in rs if r.get("train_seconds")]] if len(t) > 1]
    if not spans:
        return ""
    _, m, low, high = max(spans)
    return f" (one method's seeds took {low:.0f}-{high:.0f} s: {m})"


def size_tables(size, order, runs, out, comparisons):
    methods = method_order(runs)
    opts = SIZES[size]
    out.append(f"\n## Training size `{size}`: {opts['per_lang']} utterances per language, "
               f"{opts['epochs']} epochs\n")
    counts = ", ".join(f"`{t}` {len(order[t]['utts'])}" for t in TEST_SETS)
    out.append(f"Test utterances: {counts}. CER % (sclite), mean over seeds ± the half-width of "
               "its 95% t-interval; [brackets]: 95% bootstrap interval over utterances of the "
               "seed-averaged CER. Trainable: parameters the method trains (the experts: four "
               "LoRAs, one per language, routed by the given language unless the row says "
               "otherwise). Train s: median over seeds of stage 8's wall time; the runs were "
               f"made in several sessions on 2-core machines of one kind{spread_note(runs)}, so "
               "compare training speed with the interleaved `bench/train_step_bench.py` "
               "(docs/benchmarks.md) instead.\n")
    head = ("| method | trainable | seeds | " + " | ".join(f"CER {SET_NAMES[t]}" for t in TEST_SETS)
            + f" | CER {SET_NAMES['ood']} | train s | peak MB |")
    out += [head, "|" + "---|" * (head.count("|") - 1)]
    for m in methods:
        cells = []
        for t in TEST_SETS + ["ood"]:
            errors, lengths = matrix(runs[m], t, order)
            mean, half = seed_interval(run_cers(errors, lengths))
            low, high = cer_interval(errors, lengths)
            cells.append(f"{fmt_ci(mean, half)} [{low:.1f}, {high:.1f}]")
        train = [r.get("train_seconds") for r in runs[m] if r.get("train_seconds")]
        peak = [r.get("peak_rss_mb") for r in runs[m] if r.get("peak_rss_mb")]
        seeds = ",".join(str(r["seed"]) for r in runs[m]) if m != "zero_shot" else "-"
        cost = f" {np.median(train):.0f} | {max(peak):,} |" if train else " | |"
        out.append(f"| {method_label(m)} | {runs[m][0]['trainable']:,} | {seeds} | "
                   + " | ".join(cells) + " |" + cost)
    langs = sorted(set(order["test"]["langs"]))
    out.append(f"\nPer language, mean CER over seeds, in-grammar `test` / out-of-domain pooled "
               f"(`test_engine` has ja and en only):\n")
    head = "| method | " + " | ".join(f"CER {l}" for l in langs) + " |"
    out += [head, "|" + "---|" * (len(langs) + 1)]
    for m in methods:
        cells = []
        for lang in langs:
            pair = []
            for t in ("test", "ood"):
                errors, lengths = matrix(runs[m], t, order, lang)
                pair.append(f"{run_cers(errors, lengths).mean():.2f}")
            cells.append(" / ".join(pair))
        out.append(f"| {method_label(m)} | " + " | ".join(cells) + " |")
    routed_by_lid = [m for m in methods if all(r.get("lid_by_set") for r in runs[m])]
    if routed_by_lid:
        out.append("\nLanguage identification of the decodings routed by it: utterances whose "
                   "detected language is the right one, %, mean over seeds:\n")
        head = "| decoding | " + " | ".join(SET_NAMES[t] for t in TEST_SETS) + " |"
        out += [head, "|" + "---|" * (len(TEST_SETS) + 1)]
        for m in routed_by_lid:
            cells = [f"{np.mean([r['lid_by_set'][t] for r in runs[m]]):.1f}" for t in TEST_SETS]
            out.append(f"| {method_label(m)} | " + " | ".join(cells) + " |")

    if "lora" not in runs:
        return
    rows = []
    for m in methods:
        if m in ("lora", "zero_shot"):
            continue
        for t in TEST_SETS + ["ood"]:
            a, lengths = matrix(runs[m], t, order)
            b, _ = matrix(runs["lora"], t, order)
            result = compare(a, b, lengths)
            base = run_cers(b, lengths).mean()
            rows.append(dict(method=m, test=t, base=base, **result))
            comparisons[(size, m, t)] = rows[-1]
    adjusted = holm([r["p"] for r in rows])
    out.append(f"\nAgainst raw LoRA (`lora`) on the same utterances: difference of mean CER "
               f"(negative: fewer errors than LoRA), relative to LoRA, 95% interval with seeds "
               f"and utterances resampled (4,000 rounds), two-sided p, and p after Holm's "
               f"correction over the {len(rows)} comparisons of this table; **bold**: "
               f"significant after correction (< 0.05).\n")
    out += ["| method | test set | CER difference (points) | relative | 95% interval | p | "
            "p (Holm) |", "|---|---|---|---|---|---|---|"]
    for r, p_adj in zip(rows, adjusted):
        r["p_holm"] = p_adj
        rel = f"{100 * r['diff'] / r['base']:+.0f}%" if r["base"] > 0 else "n/a"
        diff = f"{r['diff']:+.2f}"
        if p_adj < 0.05:
            diff = f"**{diff}**"
        out.append(f"| {method_label(r['method'])} | {SET_NAMES[r['test']]} | {diff} | {rel} | "
                   f"[{r['low']:+.2f}, {r['high']:+.2f}] | {r['p']:.3f} | {p_adj:.3f} |")


MARGIN = 0.10  # "matches" / "no worse": within 10% of the baseline's CER


def _numbers(r):
    return (f"{r['diff']:+.2f} points ({100 * r['diff'] / r['base']:+.0f}%), "
            f"95% [{r['low']:+.2f}, {r['high']:+.2f}], p {r['p']:.3f}")


def verdict_no_worse(r):
    if r is None:
        return "not run yet", ""
    if r["high"] < MARGIN * r["base"]:
        return "holds", _numbers(r)
    if r["low"] > 0:
        return "does not hold", _numbers(r)
    return "not separable at this sample size", _numbers(r)


def verdict_better(r):
    if r is None:
        return "not run yet", ""
    if r["high"] < 0:
        return "holds", _numbers(r)
    if r["low"] > 0:
        return "does not hold (worse)", _numbers(r)
    return "not separable at this sample size", _numbers(r)


def claims(out, comparisons, runs_by_size):
    def get(size, m, t, against=None):
        if against is None:
            return comparisons.get((size, m, t))
        order, runs = runs_by_size[size]
        if m not in runs or against not in runs:
            return None
        a, lengths = matrix(runs[m], t, order)
        b, _ = matrix(runs[against], t, order)
        return dict(base=run_cers(b, lengths).mean(), **compare(a, b, lengths))

    rows = [
        ("VO-LoRA matches raw LoRA with 27% of its parameters (Han et al.)", "in-grammar",
         verdict_no_worse(get("full", "vo_lora", "test"))),
        ("", "out-of-domain", verdict_no_worse(get("full", "vo_lora", "ood"))),
        ("LA-LoRA with about 10% of the parameters is no worse than raw LoRA (Han et al.)",
         "in-grammar", verdict_no_worse(get("full", "la_lora", "test"))),
        ("LA-LoRA generalizes: no worse out of domain (Han et al.)", "out-of-domain",
         verdict_no_worse(get("full", "la_lora", "ood"))),
        ("S2-LoRA generalizes better out of domain than AdaLoRA (Liu et al.)", "out-of-domain",
         verdict_better(get("full", "s2_lora", "ood", against="adalora"))),
        ("Language experts gain 10-15% relative over one pooled LoRA (Li et al.)", "in-grammar",
         verdict_better(get("full", "lang_experts", "test"))),
        ("", "out-of-domain", verdict_better(get("full", "lang_experts", "ood"))),
        ("... with the language detected (base-Whisper LID), not given", "out-of-domain",
         verdict_better(get("full", "lang_experts:routed_lid", "ood"))),
        ("... merged into one model (uniform fusion), no routing", "out-of-domain",
         verdict_better(get("full", "lang_experts:merged", "ood"))),
        ("With scarce data, fewer trainable parameters overfit less: VO-LoRA better than LoRA",
         "out-of-domain, `low`", verdict_better(get("low", "vo_lora", "ood"))),
        ("... LA-LoRA better than LoRA", "out-of-domain, `low`",
         verdict_better(get("low", "la_lora", "ood"))),
    ]
    out.append("\n## The papers' claims\n")
    out.append(f"Verdicts from the paired comparisons above (method minus baseline, seeds and "
               f"utterances resampled). \"Matches\" / \"no worse\": holds when the whole 95% "
               f"interval lies below {MARGIN:.0%} of the baseline's CER, does not hold when the "
               f"interval lies above zero (worse) and reaches past that margin. \"Better\": holds "
               f"when the interval lies below zero. Otherwise: not separable at this sample "
               f"size. These are single-comparison intervals; the Holm-corrected p-values are in "
               f"the tables above.\n")
    out += ["| claim | measured on | verdict | numbers |", "|---|---|---|---|"]
    for claim, where, (verdict, text) in rows:
        out.append(f"| {claim} | {where} | {verdict} | {text} |")


def plot(runs_by_size, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=False)
    zero_shot = {}
    for ax, test in zip(axes, ["test", "ood"]):
        for size, marker in (("full", "o"), ("low", "s")):
            if size not in runs_by_size:
                continue
            order, runs = runs_by_size[size]
            for m, rs in runs.items():
                if ":" in m:  # another decoding of a method: same parameters, one point each
                    continue
                errors, lengths = matrix(rs, test, order)
                mean = run_cers(errors, lengths).mean()
                if m == "zero_shot":  # far above the others: named in the title, not drawn
                    zero_shot[test] = mean
                    continue
                # the bootstrap the comparisons use: a t-interval over 2-3 seeds is so wide
                # (t = 4.3 at 3 seeds) that it reaches below zero and hides every difference
                low, high = cer_interval(errors, lengths, seeds_too=True)
                yerr = [[max(0, mean - low)], [max(0, high - mean)]]  # a percentile interval
                ax.errorbar(rs[0]["trainable"], mean, yerr=yerr,
                            fmt=marker, capsize=3, color="C0" if size == "full" else "C3")
                ax.annotate(f"{m}" + ("" if size == "full" else " (low)"),
                            (rs[0]["trainable"], mean), textcoords="offset points",
                            xytext=(4, 4), fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("trainable parameters")
        ax.set_ylabel("CER % (mean over seeds, 95% bootstrap interval:\n"
                      "seeds and utterances resampled)", fontsize=9)
        ax.set_title(SET_NAMES[test].replace("`", "") + (
            f" (zero-shot Whisper base: {zero_shot[test]:.1f})" if test in zero_shot else ""),
            fontsize=10)
        ax.grid(alpha=0.3)
    fig.suptitle("Blue circles: full training set; red squares: low-resource (25 per language)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(args):
    out = ["# Method comparison: mini_multi, seeds and out-of-domain test sets", "",
           "Made by `bench/sweep.py` (the runs are recorded in `docs/results/runs/`); the "
           "command that runs them all and writes this page:", "",
           "    .venv/bin/python bench/sweep.py", "",
           "Every run is `./run.sh --method <m> --seed <s>` of `egs2/mini_multi/asr1`, in a copy "
           "of the recipe per training size, decoded alike (`--inference_args '" + DECODING +
           "'`: greedy, language given; the first five records were decoded before the encoder's "
           "attention went through PyTorch's fused kernel, a float-rounding difference). Test sets "
           "(local/synth_corpus.py): `test` is the in-grammar espeak-ng set; `test_free` new "
           "sentences outside the grammar (same held-out voice); `test_room` the `test` "
           "sentences read by two voice variants never in training, reverberated and with noise "
           "at 10 dB SNR; `test_engine` the `test` sentences of Japanese (Open JTalk, Mei) and "
           "English (flite). The plot: docs/results.png (CER against trainable parameters; "
           "error bars: 95% bootstrap interval with seeds and utterances resampled, as in the "
           "comparisons).", ""]
    comparisons, runs_by_size = {}, {}
    for size in SIZES:
        order, runs = load_records(size)
        if order is None or not runs:
            continue
        runs_by_size[size] = (order, runs)
    planned = sum(len(DEFAULT_SIZES[size]) * 3 for size in SIZES)
    recorded = sum(len(rs) for _, runs in runs_by_size.values()
                   for m, rs in runs.items() if m != "zero_shot" and ":" not in m)
    out.append(f"Runs recorded: {recorded} of the {planned} of the default sweep (seeds 1-3)"
               + (": the sweep is not finished, and a method with one seed has no seed "
                  "spread in its intervals yet." if recorded < planned else ".") + "\n")
    for size, (order, runs) in runs_by_size.items():
        size_tables(size, order, runs, out, comparisons)
    claims(out, comparisons, runs_by_size)
    args.report.write_text("\n".join(out) + "\n")
    if runs_by_size:
        plot(runs_by_size, args.report.with_suffix(".png"))
    log(f"wrote {args.report} and {args.report.with_suffix('.png')}")


def main():
    global RECORDS
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", type=Path, default=ROOT / "egs2/mini_multi/asr1")
    parser.add_argument("--sizes", default="full,low", help="comma-separated: full, low")
    parser.add_argument("--seeds", default="1,2,3", help="comma-separated integers")
    parser.add_argument("--methods", default="",
                        help=f"comma-separated (default per size: full: all of {METHODS}; low: "
                             f"{DEFAULT_SIZES['low']})")
    parser.add_argument("--report", type=Path, default=ROOT / "docs" / "results.md")
    parser.add_argument("--records", type=Path, default=RECORDS,
                        help="where each finished run is recorded")
    parser.add_argument("--report_only", action="store_true")
    parser.add_argument("--run_args", default="", help="more options for every ./run.sh")
    args = parser.parse_args()
    RECORDS = args.records
    args.sizes = [s for s in args.sizes.split(",") if s]
    for size in args.sizes:
        if size not in SIZES:
            sys.exit(f"error: --sizes: unknown size {size!r}; choose from {sorted(SIZES)}")
    try:
        args.seeds = [int(s) for s in args.seeds.split(",") if s]
    except ValueError:
        sys.exit(f"error: --seeds {args.seeds!r}: give comma-separated integers, e.g. 1,2,3")
    args.methods = [m for m in args.methods.split(",") if m]
    for m in args.methods:
        if not (args.recipe / "conf" / f"train_{m}.yaml").is_file():
            sys.exit(f"error: --methods: no conf/train_{m}.yaml in {args.recipe}")
    args.run_args = shlex.split(args.run_args)
    failed = [] if args.report_only else run_sweep(args, args.recipe)
    report(args)
    if failed:
        sys.exit("error: runs failed (the others are recorded):\n  " + "\n  ".join(failed))


if __name__ == "__main__":
    main()
