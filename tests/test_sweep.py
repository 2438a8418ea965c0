"""bench/sweep.py and bench/sweep_report.py on records whose answer is known: a method identical
to LoRA matches it, a clearly worse one is flagged after Holm's correction and fails its claim, a
method not run says so, a method's other decodings are rows and claims of their own, the claims'
numbers are the records' own, the learning rate is chosen on dev alone, and the plan waits for the
grid; and the committed report and README findings are what the committed records give."""

import json
import re
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import sweep_report  # noqa: E402
import sweep_run  # noqa: E402
from sweep_profiles import ASTERISK, MINI_MULTI  # noqa: E402
from sweep_records import Records  # noqa: E402
from espnet_lalora.significance import compare  # noqa: E402

SETS = ["test", "test_free", "test_room", "test_engine"]
NEW_SETS = ["dev"] + SETS + ["test_real"]  # what runs recorded since 2026-12-07 hold


def make_order(rng):
    order = {}
    for t in NEW_SETS:
        langs = ["ja", "ko", "en", "es"] * 30 if t != "test_real" else ["en", "es"] * 30
        n = {"dev": 40, "test_engine": 80}.get(t, len(langs))
        langs = langs[:n]
        # test_room and test_engine read test's sentences again
        sentence_set = "test" if t in ("test_room", "test_engine") else t
        order[t] = dict(utts=[f"{l}-{t}{i:03d}" for i, l in enumerate(langs)],
                        lengths=rng.integers(15, 40, size=n).tolist(), langs=langs,
                        sentences=[f"{l}:{sentence_set} sentence {i}" for i, l in enumerate(langs)])
    for t in ("test_room", "test_engine"):  # same sentence, same length
        order[t]["lengths"] = order["test"]["lengths"][:len(order[t]["utts"])]
    return order


def write_records(folder: Path):
    """The first sweep's records (greedy only) for lora, vo_lora (half LoRA's errors), la_lora
    (three times LoRA's), zero-shot and the experts; and a learning-rate grid for bitfit (new
    records, both decodings) whose dev favours 0.01 while its test sets favour 0.003."""
    rng = np.random.default_rng(0)
    order = make_order(rng)
    (folder / "full").mkdir(parents=True)
    (folder / "full" / "test_sets.json").write_text(json.dumps(order))

    def draw(rate, sets=SETS, test_rate=None):
        return {t: rng.binomial(order[t]["lengths"], rate if t == "dev" or test_rate is None
                                else test_rate).tolist() for t in sets}

    def runs(method, rate, trainable, seeds=(1, 2, 3), same_as=None, decodings=None):
        for seed in seeds:
            errors = ({t: [e // 2 for e in same_as[seed][t]] for t in SETS} if same_as
                      else draw(rate))
            record = dict(method=method, seed=seed, size="full", trainable=trainable + seed % 2,
                          train_seconds=100.0 + seed, peak_rss_mb=2000, errors=errors)
            if decodings:
                record["decodings"] = {name: dict(lora[seed]) if rate == "lora" else draw(rate)
                                       for name, rate in decodings.items()}
                record["lid_accuracy"] = {"routed_lid": {t: 70.0 + seed for t in SETS}}
            (folder / "full" / f"{method}_seed{seed}.json").write_text(json.dumps(record))
            yield seed, errors

    lora = dict(runs("lora", 0.05, 1_081_344))
    list(runs("vo_lora", 0.05, 294_912, same_as=lora))  # half LoRA's errors, run by run
    list(runs("la_lora", 0.15, 106_496))  # three times LoRA's errors
    list(runs("zero_shot", 0.5, 0, seeds=(0,)))
    # zero-shot as run.sh decodes it, with the real set: 10% errors there
    (folder / "full" / "zero_shot_recipe.json").write_text(json.dumps(dict(
        method="zero_shot", seed=0, size="full", trainable=0, decoding={"run.sh": "greedy"},
        errors=draw(0.5, NEW_SETS, test_rate=0.5) | {"test_real": rng.binomial(
            order["test_real"]["lengths"], 0.1).tolist()})))
    # routed: half LoRA's errors; merged: LoRA's own; routed by LID: worse than LoRA
    list(runs("lang_experts", 0.025, 4_325_376,
              decodings=dict(merged="lora", routed_lid=0.15)))
    # bitfit's grid: dev best at 0.01 (its test sets would have favoured 0.003)
    for lr, dev_rate, test_rate in ((3e-4, 0.3, 0.3), (1e-3, 0.2, 0.2), (3e-3, 0.1, 0.02),
                                    (1e-2, 0.05, 0.12)):
        seeds = (1, 2, 3) if lr == 1e-2 else (1,)
        for seed in seeds:
            record = dict(method="bitfit", seed=seed, size="full", lr=lr, trainable=75_776,
                          decoding={"beam_size": 5}, train_seconds=50.0,
                          errors=draw(dev_rate, NEW_SETS, test_rate),
                          greedy_errors=draw(dev_rate, NEW_SETS, test_rate))
            (folder / "full" / f"bitfit_lr{lr:g}_seed{seed}.json").write_text(json.dumps(record))
    return order


def run_report(tmp_path):
    report, readme = tmp_path / "results.md", tmp_path / "README.md"
    start, end = sweep_report.readme_markers(MINI_MULTI)
    readme.write_text(f"intro\n{start}\nold\n{end}\nrest\n")
    result = subprocess.run([sys.executable, str(ROOT / "bench/sweep.py"), "--report_only",
                             "--records", str(tmp_path / "runs"), "--report", str(report),
                             "--readme", str(readme)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return report.read_text(), readme.read_text()


def claims_of(text):
    lines = text.splitlines()
    rows = [[c.strip() for c in l.split("|")[1:7]]
            for l in lines[lines.index("## The papers' claims"):] if l.startswith("| ")]
    return {(c[0] or p[0]) + c[1]: c for p, c in zip([rows[0]] + rows, rows)}


def test_report_verdicts_and_plot(tmp_path):
    write_records(tmp_path / "runs")
    text, readme = run_report(tmp_path)
    assert (tmp_path / "results.png").stat().st_size > 10_000
    lines = text.splitlines()
    greedy = lines.index(next(l for l in lines if l.startswith("### Decoded greedily")))
    row = next(l for l in lines[greedy:] if l.startswith("| la_lora | in-grammar"))
    assert "| **+" in row  # significantly worse after Holm
    row = next(l for l in lines[greedy:] if l.startswith("| vo_lora | in-grammar"))
    assert "| **-" in row  # significantly better
    claims = claims_of(text)
    # fewer errors than LoRA: the whole interval below the margin
    assert claims["VO-LoRA matches raw LoRA with 27% of its parameters (Han et al.)"
                  "out-of-domain"][3] == "holds"
    assert claims["LA-LoRA generalizes: no worse out of domain (Han et al.)out-of-domain"][3] \
        == "does not hold"
    assert claims["S2-LoRA generalizes better out of domain than AdaLoRA (Liu et al.)"
                  "out-of-domain"][3] == "not run yet"
    assert "| zero-shot Whisper base | 0 | - | - |" in text
    for label in ("routed", "uniform fusion", "routed by base-Whisper LID"):
        assert f"| lang_experts ({label}) | 4,325,377 / 4,325,376 / 4,325,377 (per seed) |" \
            in text, label
    assert "fused experts' LID" not in text  # not in the records: no row
    assert "| lang_experts (routed by base-Whisper LID) | 72.0 | 72.0 | 72.0 | 72.0 |" in text
    assert claims["Language experts gain 10-15% relative over one pooled LoRA (Li et al.)"
                  "out-of-domain"][3] == "holds"
    assert claims["... merged into one model (uniform fusion), no routingout-of-domain"][3] == \
        "not separable"
    assert claims["... with the language detected (base-Whisper LID), not givenout-of-domain"][3]\
        == "does not hold (worse)"
    assert "one method's seeds took 101-103 s" in text  # the training-time caution
    # the pooled out-of-domain sets: 120 + 120 sentences (room and engine read test's again)
    assert "hold 240 distinct sentences" in text
    # the README's findings: between the markers, from the same records
    assert readme.startswith("intro\n") and readme.endswith("rest\n") and "\nold\n" not in readme
    assert "Significantly worse than raw LoRA after Holm's correction" in readme
    assert re.search(r"la_lora 1[45]\.\d\d / 1[45]\.\d;", readme)  # 15% of characters


def test_claim_numbers_are_the_records_own(tmp_path):
    """The claim's difference is the difference of the records' CERs, its interval brackets it
    at the family's level (at least as wide as a single 95% interval), and its p is compare()'s."""
    order = write_records(tmp_path / "runs")
    text, _ = run_report(tmp_path)
    row = claims_of(text)["LA-LoRA generalizes: no worse out of domain (Han et al.)out-of-domain"]
    diff, low, high, p = map(float, re.match(
        r"([+-][\d.]+) points \([+-]\d+%\), \[([+-][\d.]+), ([+-][\d.]+)\], p ([\d.]+)",
        row[5]).groups())

    def pooled(method):
        records = [json.loads((tmp_path / f"runs/full/{method}_seed{s}.json").read_text())
                   for s in (1, 2, 3)]
        errors = np.array([sum((r["errors"][t] for t in MINI_MULTI.ood), []) for r in records])
        return errors
    lengths = np.array(sum((order[t]["lengths"] for t in MINI_MULTI.ood), []))
    sentences = sum((order[t]["sentences"] for t in MINI_MULTI.ood), [])
    expected = compare(pooled("la_lora"), pooled("lora"), lengths, sentences)
    assert diff == pytest.approx(expected["diff"], abs=0.006)
    assert p == pytest.approx(expected["p"], abs=0.0006)
    # Holm's level: at most 95% (equal when Holm rejects all but one); printed to 0.01
    assert low - 0.006 <= expected["low"] < diff < expected["high"] <= high + 0.006


def test_learning_rate_is_chosen_on_dev_alone(tmp_path):
    write_records(tmp_path / "runs")
    text, _ = run_report(tmp_path)
    grid = next(l for l in text.splitlines() if l.startswith("| bitfit | "))
    assert grid.count("**") == 2 and grid.split("|")[5].strip().startswith("**")  # 0.01
    row = next(l for l in text.splitlines() if l.startswith("| bitfit | 75,776 | 0.01 "))
    assert "| 1,2,3 |" in row and "chosen on dev" in row
    recipe_table = text.split("### Decoded as the recipe")[1].split("###")[0]
    assert "| bitfit |" in recipe_table and "| la_lora |" not in recipe_table
    # forgetting: bitfit's real-speech CER (12%) over zero-shot's (10%): about 1.2x
    ratio = float(re.search(r"\| ([\d.]+)x \|", next(
        l for l in recipe_table.splitlines() if l.startswith("| bitfit |"))).group(1))
    assert 1.0 < ratio < 1.45
    legacy = next(l for l in text.splitlines() if l.startswith("| la_lora | 106,49"))
    assert legacy.split(" | ")[8] == "-" and legacy.split(" | ")[10] == "-"  # no real set


def test_the_plan_waits_for_the_grid_and_resumes_from_records(tmp_path):
    rec = Records(tmp_path / "runs", MINI_MULTI)
    write_records(tmp_path / "runs")
    args = Namespace(sizes=["full"], seeds=[1, 2, 3], methods=["bitfit", "lora"],
                     tune_lr=["bitfit", "lora"])
    plan = sweep_run.planned_runs(rec, args, ROOT / "egs2/mini_multi/asr1")
    grid = [p for p in plan if p[2] == "lora" and p[1] == 1 and p[3] is not None]
    assert sorted(p[3] for p in grid) == [3e-4, 1e-3, 3e-3]  # lora's grid, then its seeds wait
    assert [p for p in plan if p[2] == "lora" and p[3] is None] == [
        ("full", s, "lora", None) for s in (1, 2, 3)]
    # bitfit's grid is recorded: its seeds run at the rate dev chose, and they are recorded
    assert {p for p in plan if p[2] == "bitfit" and p[1] > 1} == {
        ("full", 2, "bitfit", 0.01), ("full", 3, "bitfit", 0.01)}
    assert all(rec.record_path(*p[:1], p[2], p[1], p[3]).is_file()
               for p in plan if p[2] == "bitfit")
    args.tune_lr = []  # untuned: the config's rate (finetune.yaml: 1e-3)
    assert ("full", 2, "lora", 0.001) in sweep_run.planned_runs(rec, args,
                                                                ROOT / "egs2/mini_multi/asr1")


def test_committed_report_and_readme_match_the_records(tmp_path):
    """docs/results.md and the README's findings are what the committed records give: a record
    added without the report regenerated (or a README number edited by hand) fails here."""
    report, readme = tmp_path / "results.md", tmp_path / "README.md"
    readme.write_text((ROOT / "README.md").read_text())
    result = subprocess.run([sys.executable, str(ROOT / "bench/sweep.py"), "--report_only",
                             "--report", str(report), "--readme", str(readme)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert readme.read_text() == (ROOT / "README.md").read_text(), \
        "README findings drifted: run .venv/bin/python bench/sweep.py --report_only"
    assert report.read_text() == (ROOT / "docs/results.md").read_text(), \
        "docs/results.md drifted: run .venv/bin/python bench/sweep.py --report_only"


def test_bad_options_are_refused(tmp_path):
    for args, message in ((["--sizes", "huge"], "unknown size 'huge'"),
                          (["--seeds", "one"], "--seeds 'one': give comma-separated integers"),
                          (["--methods", "nolora"], "no conf/train_nolora.yaml"),
                          (["--tune_lr", "nolora"], "--tune_lr: no conf/train_nolora.yaml"),
                          (["--lr_grid", "fast"], "--lr_grid 'fast': give comma-separated"),
                          (["--recipe", "nosuch"], "--recipe 'nosuch': no sweep profile"),
                          (["--recipe", "asterisk", "--sizes", "tiny"],
                           "--sizes: unknown size 'tiny' for recipe asterisk"),
                          (["--recipe", "asterisk", "--report_only", "--report",
                            str(tmp_path / "r.md"), "--readme", str(ROOT / "README.md")],
                           "--readme: no '<!-- sweep findings (asterisk)")):
        result = subprocess.run([sys.executable, str(ROOT / "bench/sweep.py"), *args,
                                 "--records", str(tmp_path)], capture_output=True, text=True)
        assert result.returncode != 0 and message in result.stderr, result.stderr


def write_asterisk_records(folder: Path):
    """Records of the asterisk profile (both decodings, rate-named): lora at 5% errors; vo_lora
    half of LoRA's, run by run; la_lora LoRA's rate on the core voices but four times it on the
    second voices (test_shift, es/fr/it only, reading test's prompts again); zero-shot at 10% on
    the core voices."""
    rng = np.random.default_rng(1)
    order = {}
    for t, langs in (("dev", ["en", "es", "fr", "it", "ru"] * 6),
                     ("test", ["en", "es", "fr", "it", "ru"] * 24),
                     ("test_shift", ["es", "fr", "it"] * 24)):
        order[t] = dict(utts=[f"{l}-{t}{i:03d}" for i, l in enumerate(langs)],
                        lengths=rng.integers(15, 60, size=len(langs)).tolist(), langs=langs,
                        sentences=[f"{l}:prompt {i % 24} of {'dev' if t == 'dev' else 'test'}"
                                   for i, l in enumerate(langs)])
    (folder / "full").mkdir(parents=True)
    (folder / "full" / "test_sets.json").write_text(json.dumps(order))

    def draw(rates):
        return {t: rng.binomial(order[t]["lengths"], rates.get(t, rates["test"])).tolist()
                for t in order}

    for method, rates, trainable in (("lora", {"test": 0.05}, 1_081_344),
                                     ("vo_lora", None, 294_912),
                                     ("la_lora", {"test": 0.05, "test_shift": 0.2}, 106_496)):
        for seed in (1, 2, 3):
            path = folder / "full" / f"lora_lr0.001_seed{seed}.json"
            errors = (draw(rates) if rates else {t: [e // 2 for e in errors] for t, errors in
                                                 json.loads(path.read_text())["errors"].items()})
            record = dict(method=method, seed=seed, size="full", lr=1e-3, trainable=trainable,
                          decoding={"beam_size": 5}, train_seconds=80.0, errors=errors,
                          greedy_errors=errors)
            (folder / "full" / f"{method}_lr0.001_seed{seed}.json").write_text(json.dumps(record))
    (folder / "full" / "zero_shot_recipe.json").write_text(json.dumps(dict(
        method="zero_shot", seed=0, size="full", trainable=0, decoding={"beam_size": 5},
        errors=draw({"test": 0.1}))))


def test_asterisk_profile_plans_and_reports(tmp_path):
    """The asterisk profile: its sizes' data options and test sets reach run.sh, its plan
    resumes from its own records, and its report has its own columns (no pooled column for a
    single out-of-domain set), forgetting against zero-shot on `test`, its claims on the second
    voices, and its verdicts beside mini_multi's in each recipe's claims table."""
    write_asterisk_records(tmp_path / "asterisk/runs")
    rec = Records(tmp_path / "asterisk/runs", ASTERISK)
    train, decode = sweep_run.run_commands(rec, "low", "la_lora", 2, 3e-3, False,
                                           ["--nj", "1"], Path("greedy.yaml"))
    assert train[train.index("--local_data_opts") + 1] == "--train_per_lang 100"
    assert train[train.index("--test_sets") + 1] == "dev test test_shift"
    assert train[train.index("--train_args") + 1] == "--optim_conf lr=0.003 --max_epoch 12"
    assert decode[-3:] == ["greedy.yaml", "--nj", "1"] and "--local_data_opts" not in decode
    args = Namespace(sizes=["full", "low"], seeds=[1, 2], methods=[], tune_lr=["lora"])
    plan = sweep_run.planned_runs(rec, args, ROOT / ASTERISK.recipe)
    todo, waiting = sweep_run.to_run(rec, plan, {})
    assert ("full", 1, "la_lora", 0.001) not in todo  # recorded
    assert ("full", 2, "adalora", 0.001) in todo and ("low", 1, "lora", 3e-4) in todo
    assert ("low", 1, "bitfit", 0.001) not in plan  # low: lora, vo_lora, la_lora
    assert ("full", 1, "lora", None) in waiting  # the grid has only 1e-3 recorded

    report = tmp_path / "results_asterisk.md"
    result = subprocess.run([sys.executable, str(ROOT / "bench/sweep.py"), "--recipe", "asterisk",
                             "--report_only", "--records", str(tmp_path / "asterisk/runs"),
                             "--report", str(report)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    text = report.read_text()
    assert "## Training size `full`: all training prompts per language, 4 epochs" in text
    head = next(l for l in text.splitlines() if l.startswith("| method | trainable"))
    assert "(`test`) | CER second voices, es + fr + it (`test_shift`) | real vs" in head
    # forgetting: LoRA's CER on the core voices (5%) over zero-shot Whisper's there (10%)
    lora, zero = (next(l for l in text.splitlines() if l.startswith(f"| {row} |")).split(" | ")
                  for row in ("lora | 1,081,344", "zero-shot Whisper base | 0"))
    ratio = float(lora[4].split()[0]) / float(zero[4].split()[0])
    assert lora[6] == f"{ratio:.2f}x" and 0.3 < ratio < 0.7
    per_lang = next(l for l in text.splitlines() if l.startswith("| la_lora | ")
                    and l.count(" / ") == 5)
    assert per_lang.split(" | ")[1].endswith(" / -")  # en: no second voice
    claims = claims_of(text)
    assert claims["LA-LoRA generalizes: no worse out of domain (Han et al.)second voices"][3] \
        == "does not hold"
    assert claims["VO-LoRA matches raw LoRA with 27% of its parameters (Han et al.)"
                  "core voices"][3] == "holds"
    assert "Previous" not in text and (tmp_path / "results_asterisk.png").is_file()

    # the synthetic report beside it: an asterisk column in its claims table, and back
    write_records(tmp_path / "runs")
    synthetic, _ = run_report(tmp_path)
    row = next(l for l in synthetic.splitlines()
               if l.startswith("| LA-LoRA generalizes: no worse out of domain"))
    assert row.split(" | ")[3] == "does not hold"  # mini_multi's own verdict, as before
    assert row.split(" | ")[6].startswith("does not hold (recipe; +")
    result = subprocess.run([sys.executable, str(ROOT / "bench/sweep.py"), "--recipe", "asterisk",
                             "--report_only", "--records", str(tmp_path / "asterisk/runs"),
                             "--report", str(report)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "| mini_multi |" in report.read_text().split("## The papers' claims")[1]
