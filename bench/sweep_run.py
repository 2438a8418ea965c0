"""Running the sweep: the plan (sizes x methods x seeds, the learning-rate grid first), one run
through the recipe driver in a work copy of the recipe per size, redecoding, resuming from the
records (a run with a record is done; the driver's stamps skip the stages a killed run had
finished)."""

import shlex
import subprocess
import sys
import time
from pathlib import Path

import yaml

from sweep_collect import ZERO_SHOT_EXP, decode_dir, record_run, record_zero_shot
from sweep_profiles import ROOT
from sweep_records import GREEDY_DECODING, GREEDY_TAG, read_json, run_tag


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


def greedy_config(work: Path) -> Path:
    """The greedy decoding as a config of its own (decode dirs decode_<GREEDY_TAG>)."""
    path = work / f"{GREEDY_TAG}.yaml"
    path.write_text(yaml.safe_dump(GREEDY_DECODING, sort_keys=False))
    return path


def run_commands(rec, size, method, seed, lr, zero_shot, run_args, greedy) -> list:
    """The two ./run.sh calls of a run: train and decode as the recipe decodes, then decode
    greedily (stages 10-11 with the greedy config)."""
    opts = rec.profile.sizes[size]
    common = ["--method", method, "--seed", str(seed), "--asr_tag", run_tag(method, seed, lr),
              "--test_sets", " ".join(["dev"] + rec.profile.test_sets)]
    # the run's learning rate first, then the size's options, then any the user gave (later wins)
    run_args, user_train = list(run_args), ""
    while "--train_args" in run_args:
        at = run_args.index("--train_args")
        user_train += " " + run_args[at + 1]
        del run_args[at:at + 2]
    train = f"--optim_conf lr={lr:g} {opts.train}{user_train}".strip()
    return [["./run.sh", *common, "--local_data_opts", opts.data, "--zero_shot",
             "true" if zero_shot else "false", "--train_args", train, *run_args],
            ["./run.sh", *common, "--stage", "10", "--stop_stage", "11", "--zero_shot",
             "false", "--inference_config", str(greedy), *run_args]]


def one_run(rec, recipe: Path, size, method, seed, lr, zero_shot, run_args) -> bool:
    """Train and decode one run (the recipe's decoding, then the greedy one) and record it."""
    work = workdir(recipe, size)
    commands = run_commands(rec, size, method, seed, lr, zero_shot, run_args,
                            greedy_config(work))
    run_log = work / "exp" / "logs" / f"sweep_{run_tag(method, seed, lr)}.log"
    run_log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with open(run_log, "w") as out:
        for cmd in commands:
            log(f"  (cd {work} && {shlex.join(cmd)})")
            if subprocess.run(cmd, cwd=work, stdout=out, stderr=subprocess.STDOUT).returncode:
                log(f"FAILED after {time.monotonic() - t0:.0f} s: {run_log}")
                return False
    record_run(rec, work, size, method, seed, lr, time.monotonic() - t0)
    return True


def redecode_one(rec, work: Path, size: str, record: dict, zero_shot: bool, run_args):
    method, seed, lr = record["method"], record["seed"], record["lr"]
    tag = run_tag(method, seed, lr)
    cmd = ["./run.sh", "--method", method, "--seed", str(seed), "--asr_tag", tag,
           "--test_sets", " ".join(["dev"] + rec.profile.test_sets), "--stage", "10",
           "--stop_stage", "11", "--zero_shot", "true" if zero_shot else "false", *run_args]
    log(f"redecode {size} {tag}: (cd {work} && {shlex.join(cmd)})")
    run_log = work / "exp" / "logs" / f"sweep_redecode_{tag}.log"
    with open(run_log, "w") as out:
        if subprocess.run(cmd, cwd=work, stdout=out, stderr=subprocess.STDOUT).returncode:
            sys.exit(f"error: redecoding {tag} failed; see {run_log}")
    record_run(rec, work, size, method, seed, lr, record["run_seconds"])


def redecode(rec, recipe: Path, sizes, zero_shot_asked: bool, run_args) -> list:
    """Every recorded run of the sizes whose experiment is still in the work folder, decoded
    again as the recipe decodes now (stages 10-11; the training is untouched) and recorded
    again, zero-shot Whisper with the first; returns the runs whose experiment is gone."""
    gone = []
    for size in sizes:
        work = workdir(recipe, size)
        zero_shot = ((zero_shot_asked and size == rec.profile.zero_shot_size)
                     or rec.zero_shot_path(size).is_file())
        for path in sorted(rec.size_dir(size).glob("*_lr*_seed*.json")):
            record = read_json(path)
            tag = run_tag(record["method"], record["seed"], record["lr"])
            if not (work / "exp" / f"asr_{tag}" / "export").is_dir():
                gone.append(f"{size} {tag}")
                continue
            redecode_one(rec, work, size, record, zero_shot, run_args)
            if zero_shot:
                record_zero_shot(rec, work, size)
                zero_shot = False
    return gone


def planned_runs(rec, args, recipe: Path):
    """(size, seed, method, lr) still to run, the grid first: seed 1 at every rate of the grid
    for the methods whose rate is tuned; the other seeds once the grid has chosen (None: wait)."""
    plan = []
    for size in args.sizes:
        for method in args.tune_lr:
            plan += [(size, 1, method, lr) for lr in rec.lr_grid(method)]
    for seed in args.seeds:  # seed by seed: a sweep stopped early has every method's first seeds
        for size in args.sizes:
            for method in (args.methods or rec.profile.default_methods[size]):
                lr = (rec.chosen_lr(size, method) if method in args.tune_lr
                      else config_lr(recipe, method))
                plan.append((size, seed, method, lr))
    return plan


def to_run(rec, plan, failed):
    """(runs to make, runs waiting for their grid): the plan less what is recorded or failed."""
    waiting = [p for p in plan if p[3] is None]
    todo = [p for p in plan if p[3] is not None and p not in failed
            and not rec.record_path(p[0], p[2], p[1], p[3]).is_file()]
    return list(dict.fromkeys(todo)), waiting


def run_sweep(rec, args, recipe: Path):
    """Run what the plan still lacks, one run at a time, re-planning after each (the grid's
    choice appears once its last run is recorded); a failed run is not retried in this call.
    Returns the failures."""
    failed, started, done = {}, time.monotonic(), 0
    while True:
        plan = planned_runs(rec, args, recipe)
        todo, waiting = to_run(rec, plan, failed)
        if not todo:
            if not failed and not waiting:
                log(f"all {len(set(plan))} planned runs are recorded")
            if waiting:  # only when a grid run failed
                failed["waiting"] = f"{len(waiting)} runs wait for a learning-rate grid that failed"
            return list(failed.values())
        log(f"{len(todo) + len(waiting)} runs to run"
            + (f" ({len(waiting)} once the learning-rate grid has chosen)" if waiting else ""))
        size, seed, method, lr = todo[0]
        zero_shot = (args.zero_shot and size == rec.profile.zero_shot_size
                     and not rec.zero_shot_path(size).is_file())
        log(f"run: {size} {method} lr {lr:g} seed {seed}")
        t0 = time.monotonic()
        work = workdir(recipe, size)
        if not one_run(rec, recipe, size, method, seed, lr, zero_shot, args.run_args):
            run_log = work / "exp/logs" / f"sweep_{run_tag(method, seed, lr)}.log"
            failed[todo[0]] = f"{size} {method} seed {seed} lr {lr:g} (log: {run_log})"
            continue
        if zero_shot and decode_dir(work, ZERO_SHOT_EXP).is_dir():
            record_zero_shot(rec, work, size)
        done += 1
        left = len(todo) + len(waiting) - 1
        eta = (time.monotonic() - started) / done * left
        log(f"done in {time.monotonic() - t0:.0f} s; {left} to go, ETA {eta / 60:.0f} min")
