"""The method comparison: methods x seeds x training sizes (x learning rates) through the recipe
driver, recorded run by run; then bench/sweep_report.py writes docs/results.md, docs/results.png
and the README's findings from the records.

  .venv/bin/python bench/sweep.py                      # everything below, then the report
  .venv/bin/python bench/sweep.py --sizes full --seeds 1 --methods lora,vo_lora
  .venv/bin/python bench/sweep.py --sizes full --methods lora,bitfit --tune_lr default
  .venv/bin/python bench/sweep.py --report_only        # the report from the records so far

--tune_lr: a method's learning rate is chosen before its seeds run: seed 1 at each rate of the
grid (3e-4, 1e-3, 3e-3; BitFit also 1e-2), the rate with the lowest dev CER wins (the test sets
play no part), then the other seeds at that rate.

Each training size has its own copy of the recipe, <recipe>/sweep/<size>/ (its own data, dump
and exp; conf/ and local/ are the recipe's), so a sweep never touches the recipe's own runs.
A finished run is recorded in docs/results/runs/<size>/<method>_lr<rate>_seed<N>.json: per set
(dev and the test sets) and utterance, the character errors (sclite), decoded as the recipe decodes
(conf/decode.yaml) and again greedily as the first sweep did; with the trainable parameters,
training seconds and peak memory. (<method>_seed<N>.json: the first sweep's runs, rate 1e-3,
greedy only.) The sweep skips a run that has a record, and the driver's stamps skip the stages a
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

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from espnet_lalora.significance import sclite_utterances  # noqa: E402

TEST_SETS = ["test", "test_free", "test_room", "test_engine", "test_real"]
OOD = ["test_free", "test_room", "test_engine"]
SET_NAMES = {"test": "in-grammar (`test`)", "test_free": "other sentences (`test_free`)",
             "test_room": "unseen voices, room, 10 dB SNR (`test_room`)",
             "test_engine": "other synthesizer, ja + en (`test_engine`)",
             "test_real": "real telephone speech, en + es (`test_real`)",
             "ood": "out-of-domain, pooled"}
TEST_OPTS = "--test_per_lang 40 --free_per_lang 40 --room_per_lang 40 --engine_per_lang 40"
SIZES = {"full": dict(data=TEST_OPTS, train="", per_lang=100, epochs=4),
         "low": dict(data=f"--train_subset 25 {TEST_OPTS}", train="--max_epoch 16", per_lang=25,
                     epochs=16),
         # the test suite's: two languages, a few utterances, one epoch
         "tiny": dict(data="--langs ja,ko --train_per_lang 6 --dev_per_lang 2 --test_per_lang 2",
                      train="--max_epoch 1 --batch_size 4 --num_workers 0", per_lang=6, epochs=1)}
METHODS = ["lora", "aw_lora", "vo_lora", "r1_lora", "la_lora", "s2_lora", "adalora", "bitfit",
           "lang_experts"]
DEFAULT_SIZES = {"full": METHODS, "low": ["lora", "vo_lora", "la_lora"], "tiny": ["lora"]}
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
# Every run is decoded as the recipe decodes (conf/decode.yaml), and a second time as the first
# sweep decoded every run: greedy, with the length cap and repetition guard of the first recorded
# runs (224 tokens; any n-gram 4 times in a row), so that old and new records compare.
GREEDY_DECODING = dict(beam_size=1, ranking="espnet", maxlenratio=0.5, max_tokens=224,
                       repetition_guard=4, repetition_span=0, batch_size=8)
GREEDY_TAG = "decode_greedy_old"
DECODING = " ".join(f"--{k} {v}" for k, v in GREEDY_DECODING.items() if k != "batch_size")
# The learning rates tried per method (seed 1, chosen on dev); BitFit's biases want larger ones.
LR_GRID = [3e-4, 1e-3, 3e-3]
LR_GRID_EXTRA = {"bitfit": [1e-2]}
TUNED = ["lora", "la_lora", "s2_lora", "bitfit"]


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


def decode_dir(work: Path, exp: str, suffix: str = "", tag: str = "decode") -> Path:
    """Stage 10's output for one decoding of an experiment (suffix: the method's decode mode;
    tag: the decoding config's name)."""
    return work / "exp" / exp / f"decode_{tag}{suffix}"


def scored(work: Path, exp: str, test: str, suffix: str = "", tag: str = "decode") -> dict:
    """{utterance: (errors, reference length)} of one test set from stage 11's sclite
    alignments, under the data dir's own ids (sclite writes them in lower case)."""
    result = decode_dir(work, exp, suffix, tag) / test / "score_cer" / "result.txt"
    if not result.is_file():
        raise FileNotFoundError(f"{result}: missing (did stage 11 run?)")
    ids = {}
    for line in (work / "data" / test / "utt2lang").read_text().splitlines():
        utt = line.split()[0]
        if utt.lower() in ids:
            sys.exit(f"error: {work}/data/{test}: ids {ids[utt.lower()]} and {utt} differ only "
                     f"in case, which sclite does not tell apart")
        ids[utt.lower()] = utt
    return {ids[u]: counts for u, counts in sclite_utterances(result).items()}


def collect(work: Path, exp: str, sets, suffix: str = "", tag: str = "decode") -> dict:
    """Per test set, {utterance: errors} from stage 11's sclite alignments."""
    return {test: {u: e for u, (e, _) in scored(work, exp, test, suffix, tag).items()}
            for test in sets}


def test_set_record(work: Path, exp: str, test: str) -> dict:
    """One test set: utterances in order, their reference lengths, languages and sentences (the
    language and reference text: the unit the statistics resample, since test_room and
    test_engine read test's sentences again)."""
    counts = scored(work, exp, test)
    data = work / "data" / test
    langs = dict(line.split() for line in (data / "utt2lang").read_text().splitlines())
    texts = dict(line.split(maxsplit=1) if " " in line else (line, "")
                 for line in (data / "text").read_text(encoding="utf-8").splitlines())
    utts = sorted(counts)
    return dict(utts=utts, lengths=[counts[u][1] for u in utts], langs=[langs[u] for u in utts],
                sentences=[f"{langs[u]}:{texts[u].strip()}" for u in utts])


def update_test_sets(work: Path, size: str, exp: str, sets) -> dict:
    """test_sets.json of a size: the order every record's errors follow. Sets missing from it (or
    their sentences) are added from this run; a set whose utterances differ from the recorded
    ones stops the sweep (the records would not be comparable)."""
    path = RECORDS / size / "test_sets.json"
    order = json.loads(path.read_text()) if path.is_file() else {}
    changed = False
    for test in sets:
        made = test_set_record(work, exp, test)
        if test not in order:
            order[test], changed = made, True
        elif order[test]["utts"] != made["utts"] or order[test]["lengths"] != made["lengths"]:
            sys.exit(f"error: {work}/data/{test} differs from the recorded {path} ({test}): the "
                     f"corpus changed; record into a new --records folder")
        elif "sentences" not in order[test]:
            order[test]["sentences"], changed = made["sentences"], True
    if changed:
        write_json(path, order)
    return order


def write_json(path: Path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, separators=(",", ":")) + "\n")
    tmp.replace(path)


def lr_tag(lr: float) -> str:
    return f"{lr:g}"


def record_path(size: str, method: str, seed: int, lr=None) -> Path:
    """A run's record. Runs named without a learning rate are the first sweep's (LoRA's 1e-3,
    greedy decoding only); every later run names its rate and holds both decodings."""
    name = f"{method}_seed{seed}" if lr is None else f"{method}_lr{lr_tag(lr)}_seed{seed}"
    return RECORDS / size / f"{name}.json"


def run_tag(method: str, seed: int, lr: float) -> str:
    return f"{method}_lr{lr_tag(lr)}_seed{seed}"


def record_run(work: Path, size: str, method: str, seed: int, lr: float, seconds: float):
    exp = f"asr_{run_tag(method, seed, lr)}"
    sets = ["dev"] + TEST_SETS
    order = update_test_sets(work, size, exp, sets)
    params = yaml.safe_load((work / "exp" / exp / "export" / "params.yaml").read_text())
    resources_file = work / "exp" / exp / "train_resources.yaml"
    resources = yaml.safe_load(resources_file.read_text()) if resources_file.is_file() else {}

    def in_order(errors):
        return {t: [errors[t][u] for u in order[t]["utts"]] for t in sets}

    suffix = DECODE_SUFFIX.get(method, "")
    record = dict(method=method, seed=seed, size=size, lr=lr, trainable=params["trainable"],
                  run_seconds=round(seconds), **resources,
                  decoding=yaml.safe_load((work / "conf" / "decode.yaml").read_text()),
                  errors=in_order(collect(work, exp, sets, suffix)),
                  greedy_errors=in_order(collect(work, exp, sets, suffix, GREEDY_TAG)))
    other = OTHER_DECODINGS.get(method, {})
    if other:
        made = {name: decode_dir(work, exp, suffix) for name, suffix in other.items()
                if decode_dir(work, exp, suffix).is_dir()}
        record["decodings"] = {name: in_order(collect(work, exp, sets, other[name]))
                               for name in made}
        # how often the language was detected right, where the decoding routed by it
        record["lid_accuracy"] = {
            name: {t: yaml.safe_load((folder / t / "lid_accuracy.yaml").read_text())["accuracy"]
                   for t in TEST_SETS}
            for name, folder in made.items() if (folder / "test" / "lid_accuracy.yaml").is_file()}
    write_json(record_path(size, method, seed, lr), record)


def config_lr(recipe: Path, method: str) -> float:
    """The learning rate a method's config trains with (its base configs followed)."""
    path = recipe / "conf" / f"train_{method}.yaml"
    while True:
        conf = yaml.safe_load(path.read_text()) or {}
        if "lr" in (conf.get("optim_conf") or {}):
            return float(conf["optim_conf"]["lr"])
        if "base_config" not in conf:
            sys.exit(f"error: {recipe}/conf/train_{method}.yaml: no optim_conf.lr in it or its "
                     f"base configs")
        path = path.parent / conf["base_config"]


def lr_grid(method: str):
    return LR_GRID + [lr for lr in LR_GRID_EXTRA.get(method, []) if lr not in LR_GRID]


def read_json(path: Path):
    return json.loads(Path(path).read_text())


def choose_lr(order: dict, method: str, grid: dict):
    """The learning rate of the grid whose seed-1 run has the lowest CER on dev, as the recipe
    decodes (grid: {rate: record}); None while a rate of the grid is missing. The test sets play
    no part in the choice."""
    if any(lr not in grid for lr in lr_grid(method)):
        return None

    def dev_cer(record):
        errors = record["errors"]["recipe"] if "recipe" in record["errors"] else record["errors"]
        return sum(errors["dev"]) / sum(order["dev"]["lengths"])

    return min(lr_grid(method), key=lambda lr: dev_cer(grid[lr]))


def chosen_lr(size: str, method: str):
    paths = {lr: record_path(size, method, 1, lr) for lr in lr_grid(method)}
    if not all(p.is_file() for p in paths.values()):
        return None
    order = read_json(RECORDS / size / "test_sets.json")
    return choose_lr(order, method, {lr: read_json(p) for lr, p in paths.items()})


def greedy_config(work: Path) -> Path:
    """The first sweep's decoding as a config of its own (decode dirs decode_<GREEDY_TAG>): kept as
    a second decoding of every run, comparable with the first sweep's records."""
    path = work / f"{GREEDY_TAG}.yaml"
    path.write_text(yaml.safe_dump(GREEDY_DECODING, sort_keys=False))
    return path


def one_run(recipe: Path, size: str, method: str, seed: int, lr: float, zero_shot: bool,
            run_args) -> bool:
    """Train and decode one run (the recipe's decoding, then the greedy one) and record it."""
    work = workdir(recipe, size)
    opts = SIZES[size]
    common = ["--method", method, "--seed", str(seed), "--asr_tag", run_tag(method, seed, lr),
              "--test_sets", " ".join(["dev"] + TEST_SETS)]
    # the run's learning rate first, then the size's options, then any the user gave (later wins)
    run_args, user_train = list(run_args), ""
    while "--train_args" in run_args:
        at = run_args.index("--train_args")
        user_train += " " + run_args[at + 1]
        del run_args[at:at + 2]
    train = f"--optim_conf lr={lr:g} {opts['train']}{user_train}".strip()
    commands = [["./run.sh", *common, "--local_data_opts", opts["data"], "--zero_shot",
                 "true" if zero_shot else "false", "--train_args", train, *run_args],
                ["./run.sh", *common, "--stage", "10", "--stop_stage", "11", "--zero_shot",
                 "false", "--inference_config", str(greedy_config(work)), *run_args]]
    run_log = work / "exp" / "logs" / f"sweep_{run_tag(method, seed, lr)}.log"
    run_log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with open(run_log, "w") as out:
        for cmd in commands:
            log(f"  (cd {work} && {shlex.join(cmd)})")
            if subprocess.run(cmd, cwd=work, stdout=out, stderr=subprocess.STDOUT).returncode:
                log(f"FAILED after {time.monotonic() - t0:.0f} s: {run_log}")
                return False
    record_run(work, size, method, seed, lr, time.monotonic() - t0)
    return True


def redecode(args, recipe: Path) -> list:
    """Every recorded run of the sizes whose experiment is still in the work folder, decoded
    again as the recipe decodes now (stages 10-11; the training is untouched) and recorded
    again, zero-shot Whisper with the first; returns the runs whose experiment is gone."""
    gone = []
    for size in args.sizes:
        work = workdir(recipe, size)
        zero_shot = (args.zero_shot and size == "full") or zero_shot_path(size).is_file()
        for path in sorted((RECORDS / size).glob("*_lr*_seed*.json")):
            record = json.loads(path.read_text())
            method, seed, lr = record["method"], record["seed"], record["lr"]
            tag = run_tag(method, seed, lr)
            if not (work / "exp" / f"asr_{tag}" / "export").is_dir():
                gone.append(f"{size} {tag}")
                continue
            cmd = ["./run.sh", "--method", method, "--seed", str(seed), "--asr_tag", tag,
                   "--test_sets", " ".join(["dev"] + TEST_SETS), "--stage", "10",
                   "--stop_stage", "11", "--zero_shot", "true" if zero_shot else "false",
                   *args.run_args]
            log(f"redecode {size} {tag}: (cd {work} && {shlex.join(cmd)})")
            run_log = work / "exp" / "logs" / f"sweep_redecode_{tag}.log"
            with open(run_log, "w") as out:
                if subprocess.run(cmd, cwd=work, stdout=out, stderr=subprocess.STDOUT).returncode:
                    sys.exit(f"error: redecoding {tag} failed; see {run_log}")
            record_run(work, size, method, seed, lr, record["run_seconds"])
            if zero_shot:
                record_zero_shot(work, size)
                zero_shot = False
    return gone


def planned_runs(args, recipe: Path):
    """(size, seed, method, lr) still to run, the grid first: seed 1 at every rate of the grid
    for the methods whose rate is tuned; the other seeds once the grid has chosen (None: wait)."""
    plan = []
    for size in args.sizes:
        for method in args.tune_lr:
            plan += [(size, 1, method, lr) for lr in lr_grid(method)]
    for seed in args.seeds:  # seed by seed: a sweep stopped early has every method's first seeds
        for size in args.sizes:
            for method in (args.methods or DEFAULT_SIZES[size]):
                lr = (chosen_lr(size, method) if method in args.tune_lr
                      else config_lr(recipe, method))
                plan.append((size, seed, method, lr))
    return plan


def run_sweep(args, recipe: Path):
    """Run what the plan still lacks, one run at a time, re-planning after each (the grid's
    choice appears once its last run is recorded); a failed run is not retried in this call."""
    failed, started, done = {}, time.monotonic(), 0
    while True:
        plan = planned_runs(args, recipe)
        waiting = [p for p in plan if p[3] is None]
        todo = [p for p in plan if p[3] is not None and p not in failed
                and not record_path(p[0], p[2], p[1], p[3]).is_file()]
        todo = list(dict.fromkeys(todo))
        if not todo:
            if not failed and not waiting:
                log(f"all {len(set(plan))} planned runs are recorded")
            if waiting:  # only when a grid run failed
                failed["waiting"] = f"{len(waiting)} runs wait for a learning-rate grid that failed"
            return list(failed.values())
        log(f"{len(todo) + len(waiting)} runs to run"
            + (f" ({len(waiting)} once the learning-rate grid has chosen)" if waiting else ""))
        size, seed, method, lr = todo[0]
        zero_shot = args.zero_shot and size == "full" and not zero_shot_path(size).is_file()
        log(f"run: {size} {method} lr {lr:g} seed {seed}")
        t0 = time.monotonic()
        if not one_run(recipe, size, method, seed, lr, zero_shot, args.run_args):
            run_log = workdir(recipe, size) / "exp/logs" / f"sweep_{run_tag(method, seed, lr)}.log"
            failed[todo[0]] = f"{size} {method} seed {seed} lr {lr:g} (log: {run_log})"
            continue
        work = workdir(recipe, size)
        if zero_shot and decode_dir(work, "asr_zero_shot_whisper_base").is_dir():
            record_zero_shot(work, size)
        done += 1
        left = len(todo) + len(waiting) - 1
        eta = (time.monotonic() - started) / done * left
        log(f"done in {time.monotonic() - t0:.0f} s; {left} to go, ETA {eta / 60:.0f} min")


def zero_shot_path(size: str) -> Path:
    """Zero-shot Whisper decoded as run.sh decodes it (zero_shot.json: the first sweep's)."""
    return RECORDS / size / "zero_shot_recipe.json"


def record_zero_shot(work: Path, size: str):
    order = json.loads((RECORDS / size / "test_sets.json").read_text())
    sets = ["dev"] + TEST_SETS
    errors = collect(work, "asr_zero_shot_whisper_base", sets)
    write_json(zero_shot_path(size),
               dict(method="zero_shot", seed=0, size=size, trainable=0,
                    # run.sh decodes zero-shot Whisper with the tuned models' config
                    decoding=yaml.safe_load((work / "conf" / "decode.yaml").read_text()),
                    errors={t: [errors[t][u] for u in order[t]["utts"]] for t in sets}))


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
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md",
                        help="where the findings paragraph goes (between its markers); "
                             "'none': nowhere")
    parser.add_argument("--tune_lr", default="",
                        help=f"comma-separated methods whose learning rate is chosen first: seed 1 "
                             f"at each of {[f'{lr:g}' for lr in LR_GRID]} (bitfit also 1e-2), the "
                             f"lowest dev CER wins, the seeds run at it ('default': "
                             f"{','.join(TUNED)})")
    parser.add_argument("--lr_grid", default="",
                        help="comma-separated learning rates of the grid (default: "
                             f"{','.join(f'{lr:g}' for lr in LR_GRID)}; bitfit adds 0.01)")
    parser.add_argument("--zero_shot", action="store_true",
                        help="also decode zero-shot Whisper (in the first run of size full, "
                             "unless recorded): the reference of the real-vs-zero-shot column")
    parser.add_argument("--run_args", default="", help="more options for every ./run.sh")
    parser.add_argument("--redecode", action="store_true",
                        help="decode the recorded runs of --sizes again as the recipe decodes "
                             "now (their experiments must still be in the work folder), record "
                             "them again and write the report; nothing is trained")
    args = parser.parse_args()
    RECORDS = args.records
    args.readme = None if str(args.readme) == "none" else args.readme
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
    if args.lr_grid:
        try:
            LR_GRID[:] = [float(x) for x in args.lr_grid.split(",") if x]
        except ValueError:
            sys.exit(f"error: --lr_grid {args.lr_grid!r}: give comma-separated numbers, e.g. "
                     f"3e-4,1e-3,3e-3")
    args.tune_lr = TUNED if args.tune_lr == "default" else [m for m in args.tune_lr.split(",") if m]
    for m in args.tune_lr:
        if not (args.recipe / "conf" / f"train_{m}.yaml").is_file():
            sys.exit(f"error: --tune_lr: no conf/train_{m}.yaml in {args.recipe}")
    if args.redecode:
        gone = redecode(args, args.recipe)
        if gone:
            log(f"not redecoded (experiment gone; rerun to redo): {', '.join(gone)}")
        failed = []
    else:
        failed = [] if args.report_only else run_sweep(args, args.recipe)
    sys.modules.setdefault("sweep", sys.modules[__name__])  # the report reads this module's grid
    from sweep_report import write_report

    paragraph = write_report(RECORDS, args.report, args.readme)
    log(f"wrote {args.report}, {args.report.with_suffix('.png')}"
        + (f" and the findings in {args.readme}" if args.readme else "") + f":\n{paragraph}")
    if failed:
        sys.exit("error: runs failed (the others are recorded):\n  " + "\n  ".join(failed))


if __name__ == "__main__":
    main()
