"""The method comparison: methods x seeds x training sizes (x learning rates) through a recipe's
driver, recorded run by run; then the report (docs/results.md, its plot docs/results.png and the
README's findings for mini_multi; docs/results_<recipe>.md for another recipe) from the records.

  .venv/bin/python bench/sweep.py                      # everything below, then the report
  .venv/bin/python bench/sweep.py --sizes full --seeds 1 --methods lora,vo_lora
  .venv/bin/python bench/sweep.py --sizes full --methods lora,bitfit --tune_lr default
  .venv/bin/python bench/sweep.py --recipe asterisk --tune_lr default --zero_shot
  .venv/bin/python bench/sweep.py --report_only        # the report from the records so far

--recipe: which recipe's profile (bench/sweep_profiles.py: its sizes with their data and
training options, test sets, out-of-domain pool, real-speech set, methods): mini_multi (the
default) or asterisk, or a recipe folder egs2/<name>/asr1 (a copy of one too).

--tune_lr: a method's learning rate is chosen before its seeds run: seed 1 at each rate of the
grid (3e-4, 1e-3, 3e-3; BitFit also 1e-2), the rate with the lowest dev CER wins (the test sets
play no part), then the other seeds at that rate.

Each training size has its own copy of the recipe, <recipe>/sweep/<size>/ (its own data, dump
and exp; conf/ and local/ are the recipe's), so a sweep never touches the recipe's own runs.
A finished run is recorded in <records>/<size>/<method>_lr<rate>_seed<N>.json (records:
docs/results/runs for mini_multi, docs/results/<recipe>/runs for another recipe): per set (dev
and the test sets) and utterance, the character errors (sclite), decoded as the recipe decodes
(conf/decode.yaml) and again greedily; with the trainable parameters, training seconds and peak
memory. Older records, <method>_seed<N>.json, hold the greedy decoding only, at rate 1e-3. The
sweep skips a run that has a record, and the driver's stamps skip the stages a killed run had
finished, so it resumes where it stopped, also on another machine (the records are committed;
the run folders are not). The report reads the records only.
"""

import argparse
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sweep_profiles import METHODS, ROOT, profile_of  # noqa: E402
from sweep_records import LR_GRID, Records  # noqa: E402
from sweep_report import readme_block, readme_markers, write_report  # noqa: E402
from sweep_run import log, redecode, run_sweep  # noqa: E402


def parser():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default="mini_multi",
                   help="a profile (mini_multi, asterisk) or a recipe folder egs2/<name>/asr1")
    p.add_argument("--sizes", default="full,low", help="comma-separated: the profile's sizes")
    p.add_argument("--seeds", default="1,2,3", help="comma-separated integers")
    p.add_argument("--methods", default="",
                   help=f"comma-separated (default per size, the profile's: full: all of "
                        f"{METHODS}; low: lora, vo_lora, la_lora)")
    p.add_argument("--report", type=Path, default=None,
                   help="the report (default: the profile's, docs/results.md for mini_multi)")
    p.add_argument("--records", type=Path, default=None,
                   help="where each finished run is recorded (default: the profile's)")
    p.add_argument("--report_only", action="store_true")
    p.add_argument("--readme", default=None,
                   help="where the findings paragraph goes (between its markers); 'none': "
                        "nowhere (default: README.md for mini_multi, nowhere for the others)")
    p.add_argument("--tune_lr", default="",
                   help=f"comma-separated methods whose learning rate is chosen first: seed 1 "
                        f"at each of {[f'{lr:g}' for lr in LR_GRID]} (bitfit also 1e-2), the "
                        f"lowest dev CER wins, the seeds run at it ('default': the profile's "
                        f"lora,la_lora,s2_lora,bitfit)")
    p.add_argument("--lr_grid", default="",
                   help="comma-separated learning rates of the grid (default: "
                        f"{','.join(f'{lr:g}' for lr in LR_GRID)}; bitfit adds 0.01)")
    p.add_argument("--zero_shot", action="store_true",
                   help="also decode zero-shot Whisper (in the first run of size full, unless "
                        "recorded): the reference of the real-vs-zero-shot column")
    p.add_argument("--run_args", default="", help="more options for every ./run.sh")
    p.add_argument("--redecode", action="store_true",
                   help="decode the recorded runs of --sizes again as the recipe decodes now "
                        "(their experiments must still be in the work folder), record them "
                        "again and write the report; nothing is trained")
    return p


def methods_of(option: str, value: str, recipe: Path) -> list:
    """A comma-separated list of methods, each with a config in the recipe."""
    methods = [m for m in value.split(",") if m]
    for m in methods:
        if not (recipe / "conf" / f"train_{m}.yaml").is_file():
            sys.exit(f"error: {option}: no conf/train_{m}.yaml in {recipe}")
    return methods


def checked(args):
    """The options checked and resolved; returns (records, recipe folder)."""
    try:
        profile = profile_of(args.recipe)
    except ValueError as e:
        sys.exit(f"error: {e}")
    recipe = profile.path if args.recipe == profile.name else Path(args.recipe)
    args.sizes = [s for s in args.sizes.split(",") if s]
    for size in args.sizes:
        if size not in profile.sizes:
            sys.exit(f"error: --sizes: unknown size {size!r} for recipe {profile.name}; choose "
                     f"from {sorted(profile.sizes)}")
    try:
        args.seeds = [int(s) for s in args.seeds.split(",") if s]
    except ValueError:
        sys.exit(f"error: --seeds {args.seeds!r}: give comma-separated integers, e.g. 1,2,3")
    args.methods = methods_of("--methods", args.methods, recipe)
    args.run_args = shlex.split(args.run_args)
    try:
        grid = tuple(float(x) for x in args.lr_grid.split(",") if x) or tuple(LR_GRID)
    except ValueError:
        sys.exit(f"error: --lr_grid {args.lr_grid!r}: give comma-separated numbers, e.g. "
                 f"3e-4,1e-3,3e-3")
    args.tune_lr = methods_of("--tune_lr", ",".join(profile.tuned) if args.tune_lr == "default"
                              else args.tune_lr, recipe)
    args.report = args.report or ROOT / profile.report
    readme = args.readme or (str(ROOT / "README.md") if profile.readme else "none")
    args.readme = None if readme == "none" else Path(readme)
    if args.readme:  # checked now, not after hours of runs
        readme_block(args.readme, readme_markers(profile))
    return Records(args.records or profile.records_root, profile, grid), recipe


def main():
    args = parser().parse_args()
    rec, recipe = checked(args)
    failed = []
    if args.redecode:
        gone = redecode(rec, recipe, args.sizes, args.zero_shot, args.run_args)
        if gone:
            log(f"not redecoded (experiment gone; rerun to redo): {', '.join(gone)}")
    elif not args.report_only:
        failed = run_sweep(rec, args, recipe)
    paragraph = write_report(rec, args.report, args.readme)
    log(f"wrote {args.report}, {args.report.with_suffix('.png')}"
        + (f" and the findings in {args.readme}" if args.readme else "") + f":\n{paragraph}")
    if failed:
        sys.exit("error: runs failed (the others are recorded):\n  " + "\n  ".join(failed))


if __name__ == "__main__":
    main()
