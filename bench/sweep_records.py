"""The sweep's records: where they are (<records>/<size>/), how they are named, read and written,
the utterance order every record's errors follow (test_sets.json), and which runs stand for a
method (the learning rate its grid chose on dev).

A record is <method>_lr<rate>_seed<N>.json: per set (dev and the test sets) and utterance, the
character errors, decoded as the recipe decodes ("errors") and greedily ("greedy_errors"); older
records, <method>_seed<N>.json, have no "decoding" and hold the greedy errors only, at
LEGACY_LR. Zero-shot Whisper: zero_shot_recipe.json (and the older zero_shot.json)."""

import json
from dataclasses import dataclass
from pathlib import Path

from sweep_profiles import METHODS, PROFILES, Profile

LEGACY_LR = 1e-3  # the rate of the records named without one (every method at LoRA's rate)
LR_GRID = [3e-4, 1e-3, 3e-3]  # tried per method on seed 1; BitFit's biases want larger ones
LR_GRID_EXTRA = {"bitfit": [1e-2]}
DECODINGS = ["recipe", "greedy"]  # the decodings a record may hold, the recipe's first
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
# The greedy decoding every run also gets: the length cap and repetition guard of the oldest
# records (224 tokens; any n-gram 4 times in a row), so that all records compare.
GREEDY_DECODING = dict(beam_size=1, ranking="espnet", maxlenratio=0.5, max_tokens=224,
                       repetition_guard=4, repetition_span=0, batch_size=8)
GREEDY_TAG = "decode_greedy_old"


def read_json(path: Path):
    return json.loads(Path(path).read_text())


def write_json(path: Path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, separators=(",", ":")) + "\n")
    tmp.replace(path)


def lr_tag(lr: float) -> str:
    return f"{lr:g}"


def run_tag(method: str, seed: int, lr: float) -> str:
    return f"{method}_lr{lr_tag(lr)}_seed{seed}"


@dataclass(frozen=True)
class Records:
    """One recipe's records: the folder, the recipe's profile and the learning-rate grid."""
    root: Path
    profile: Profile
    grid: tuple = tuple(LR_GRID)

    def size_dir(self, size: str) -> Path:
        return self.root / size

    def order_path(self, size: str) -> Path:
        return self.root / size / "test_sets.json"

    def record_path(self, size: str, method: str, seed: int, lr=None) -> Path:
        """A run's record; named without a rate: an old record (LEGACY_LR, greedy only)."""
        name = f"{method}_seed{seed}" if lr is None else run_tag(method, seed, lr)
        return self.root / size / f"{name}.json"

    def zero_shot_path(self, size: str) -> Path:
        """Zero-shot Whisper decoded as run.sh decodes it (zero_shot.json: the older one)."""
        return self.root / size / "zero_shot_recipe.json"

    def lr_grid(self, method: str) -> list:
        return list(self.grid) + [lr for lr in LR_GRID_EXTRA.get(method, [])
                                  if lr not in self.grid]

    def choose_lr(self, order: dict, method: str, grid: dict):
        """The rate of the grid whose seed-1 run has the lowest CER on dev, as the recipe
        decodes (grid: {rate: record}); None while a rate is missing. The test sets play no
        part in the choice."""
        if any(lr not in grid for lr in self.lr_grid(method)):
            return None

        def dev_cer(record):
            errors = record["errors"]
            errors = errors["recipe"] if "recipe" in errors else errors
            return sum(errors["dev"]) / sum(order["dev"]["lengths"])

        return min(self.lr_grid(method), key=lambda lr: dev_cer(grid[lr]))

    def chosen_lr(self, size: str, method: str):
        paths = {lr: self.record_path(size, method, 1, lr) for lr in self.lr_grid(method)}
        if not all(p.is_file() for p in paths.values()):
            return None
        return self.choose_lr(read_json(self.order_path(size)), method,
                              {lr: read_json(p) for lr, p in paths.items()})

    def others(self) -> list:
        """The other recipes' records, laid out beside these as in docs/results (runs/,
        <recipe>/runs/): the claims table shows their verdicts too."""
        results = self.root.parents[len(Path(self.profile.records).parts) - 1]
        return [Records(results / p.records, p, self.grid) for p in PROFILES.values()
                if p.name != self.profile.name]


def normalize(record: dict) -> dict:
    """One run, whatever its age: errors per decoding ('recipe', 'greedy'), the same for the
    method's other decodings. Records without a 'decoding' are the old greedy-only ones."""
    first_sweep = "decoding" not in record
    if first_sweep:
        errors = {"greedy": record["errors"]}
        variants = {name: {"greedy": e} for name, e in record.get("decodings", {}).items()}
    else:
        errors = {"recipe": record["errors"], "greedy": record.get("greedy_errors")}
        variants = {name: {"recipe": e} for name, e in record.get("decodings", {}).items()}
    return dict(record, first_sweep=first_sweep, lr=record.get("lr", LEGACY_LR), errors=errors,
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


def standing_runs(rec: Records, method: str, runs, order):
    """(runs, learning rate, how it was set) that stand for a method in the tables."""
    lr = rec.choose_lr(order, method, grid_of(runs))
    if lr is not None:
        return [r for r in runs if not r["first_sweep"] and r["lr"] == lr], lr, "chosen on dev"
    first = [r for r in runs if r["first_sweep"]]
    if first:
        return first, LEGACY_LR, "LoRA's"
    by_lr = {}
    for r in runs:
        by_lr.setdefault(r["lr"], []).append(r)
    lr = max(by_lr, key=lambda k: len(by_lr[k]))
    return by_lr[lr], lr, "the config's"


def zero_shot_for(zero_shot, d):
    """The zero-shot run of a decoding's table: the one decoded that way, else the other (its
    only decoding is run.sh's greedy one, near the old greedy one)."""
    run = min(zero_shot, key=lambda r: r["errors"].get(d) is None)
    return run, run["errors"].get(d) or next(e for e in run["errors"].values() if e)


def rows_of(rec: Records, order, by_method, zero_shot):
    """({decoding: {row label: [(run, errors)]}}, {method: (rate, how)}): what each table
    shows, in METHODS order, each method followed by its other decodings."""
    rows = {d: {} for d in DECODINGS}
    info = {}
    for d in DECODINGS:
        if zero_shot:
            rows[d]["zero_shot"] = [zero_shot_for(zero_shot, d)]
    for method in [m for m in METHODS if m in by_method] + sorted(set(by_method) - set(METHODS)):
        runs, lr, how = standing_runs(rec, method, by_method[method], order)
        info[method] = (lr, how)
        names = [""] + list(OTHER_DECODINGS.get(method, {}))
        for d in DECODINGS:
            for name in names:
                pairs = [(r, r["variants"].get(name, {}).get(d) if name else r["errors"].get(d))
                         for r in runs]
                if pairs and all(e is not None for _, e in pairs):
                    rows[d][f"{method}:{name}" if name else method] = pairs
    return rows, info


def load_tables(rec: Records) -> dict:
    """{size: dict(order, by_method, zero_shot, info, rows={decoding: rows})} of every size of
    the profile that has records, in the profile's order."""
    tables = {}
    for size in rec.profile.sizes:
        order, by_method, zero_shot = load_size(rec.size_dir(size))
        if order is None or not by_method:
            continue
        rows, info = rows_of(rec, order, by_method, zero_shot)
        tables[size] = dict(order=order, by_method=by_method, zero_shot=zero_shot, info=info,
                            rows=rows)
    return tables
