"""LA-LoRA (Han et al., ISCSLP 2024): LoRA on the modules that matter, chosen by gradient statistics.

Stage 7 attaches LoRA to every candidate module (the Linear layers of the Whisper blocks), runs a
short pass over the training batches (ESPnet's own iterator: what training sees) and sums, per
``lora_A``/``lora_B``, the squared gradients (an empirical Fisher diagonal). The paper's scoring
rule: a tensor's score is that sum averaged over its elements and divided by the number of samples;
a module's importance is the mean of its A and B scores. The most important modules that fit the
budget are kept (``la_selection.json``) and stage 8 trains fresh LoRA on them alone
(``LALoRAMethod.inject``).

Budget (``adapter_conf.budget``): a number in (0, 1] is a share of raw LoRA's trainable parameters
(same rank, every candidate module; default 0.1); an integer > 1 is a parameter count.
``select_by``: ``module`` (each Linear on its own) or ``layer`` (whole blocks, importance = mean of
their modules). The modules are taken in order of importance, each one that still fits is kept.

Several processes (ESPnet's DDP ranks, torchrun): each takes whole batches (batch i goes to rank
i mod world size), and the sums and the sample count are summed over ranks (all_reduce), so the
scores equal those of one process on the same batches.
"""

import dataclasses
import json
import logging
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Union

import torch
from torch import nn

from espnet_lalora.fileio import atomic_path
from espnet_lalora.methods.base import AdapterConfigError, MethodConfig
from espnet_lalora.methods.lora import (ALL_LINEARS, LoRAMethod, LoRAOptions, add_lora,
                                        candidate_modules)
from espnet_lalora.methods.lora_layer import is_lora_parameter, lora_modules
from espnet_lalora.methods.module_grid import Panel, parse_module, plot_panels
from espnet_lalora.methods.stage8 import build_model, init_distributed, train_batches

DEFAULT_BUDGET = 0.1
SELECT_BY = ("module", "layer")


class SelectionError(AdapterConfigError):
    pass


def layer_of(name: str) -> str:
    part, layer, _ = parse_module(name)
    return f"{part}.{layer}"


def lora_size(linear: nn.Linear, rank: int) -> int:
    return rank * (linear.in_features + linear.out_features)


def check_budget(budget, select_by: str = "module") -> None:
    """Refuse a budget at or below 0, above 100%, or not a number; an unknown ``select_by``."""
    where = "adapter_conf.budget"
    if isinstance(budget, bool) or not isinstance(budget, (int, float)):
        raise SelectionError(f"{where} = {budget!r}: give a share of raw LoRA's parameters in "
                             "(0, 1] (e.g. 0.1) or a parameter count (an integer > 1)")
    if budget <= 0:
        raise SelectionError(f"{where} = {budget!r}: must be above 0 (e.g. 0.1 for 10% of raw "
                             "LoRA's parameters)")
    if budget > 1 and not (isinstance(budget, int) or float(budget).is_integer()):
        raise SelectionError(f"{where} = {budget!r}: a share above 100% of raw LoRA's parameters; "
                             "give a share in (0, 1] or an integer parameter count")
    if select_by not in SELECT_BY:
        raise SelectionError(f"adapter_conf.select_by = {select_by!r}: one of {list(SELECT_BY)}")


def budget_parameters(budget, raw_total: int) -> int:
    """The budget as a parameter count; raw_total is raw LoRA's count at the same rank."""
    check_budget(budget)
    if budget <= 1:
        return int(budget * raw_total)
    if budget > raw_total:
        raise SelectionError(f"adapter_conf.budget = {budget}: above 100% of raw LoRA's "
                             f"{raw_total:,} parameters")
    return int(budget)


# ---- statistics
class GradStats:
    """Per LoRA tensor: the sum over steps of its squared gradient; and the samples seen."""

    def __init__(self, model: nn.Module):
        self.params = {n: p for n, p in model.named_parameters() if is_lora_parameter(n)}
        self.sums = {n: torch.zeros_like(p, dtype=torch.float64) for n, p in self.params.items()}
        self.samples = 0
        self.steps = 0

    def add(self, batch_size: int):
        """Call after ``loss.backward()`` of one batch."""
        for n, p in self.params.items():
            if p.grad is not None:
                self.sums[n] += p.grad.detach().to(torch.float64) ** 2
        self.samples += batch_size
        self.steps += 1

    def all_reduce(self):
        """Sum the statistics of every rank (no-op without torch.distributed)."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return
        for t in self.sums.values():
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        counts = torch.tensor([self.samples, self.steps], dtype=torch.float64,
                              device=next(iter(self.sums.values())).device)
        dist.all_reduce(counts, op=dist.ReduceOp.SUM)
        self.samples, self.steps = int(counts[0].item()), int(counts[1].item())

    def scores(self) -> Dict[str, Dict[str, float]]:
        """{module: {"A": ..., "B": ..., "score": mean of A and B}} (the paper's rule)."""
        out = {}
        n = max(self.samples, 1)
        for name, s in self.sums.items():
            module, _, which = name.rpartition(".lora_")
            out.setdefault(module, {})[which] = s.mean().item() / n
        for v in out.values():
            v["score"] = (v.get("A", 0.0) + v.get("B", 0.0)) / 2
        return out


def run_pass(model: nn.Module, batches: Iterable, steps: int, device="cpu", progress=None,
             rank: int = 0, world_size: int = 1) -> GradStats:
    """The short pass: forward and backward on the first ``steps`` batches, no update. Batch i
    goes to rank i mod world_size; the statistics are summed over ranks at the end.

    At the start B = 0, so the gradients of every A are zero and a module's importance is half its
    B score; dL/dB = dL/dW A^T (scaled), a random projection of the whole weight's gradient."""
    from espnet2.torch_utils.device_funcs import to_device

    model.train()
    stats = GradStats(model)
    for i, (utt_ids, batch) in enumerate(batches):
        if i >= steps:
            break
        if i % world_size != rank:
            continue
        batch = to_device(batch, device)
        model.zero_grad(set_to_none=True)
        loss = model(**batch)[0]
        loss.backward()
        stats.add(len(utt_ids))
        if progress:
            progress.update()
    model.zero_grad(set_to_none=True)
    stats.all_reduce()
    return stats


# ---- selection
def select(scores: Dict[str, float], sizes: Dict[str, int], budget_params: int,
           select_by: str = "module") -> List[str]:
    """The most important modules (or layers) that fit ``budget_params``, in order."""
    units: Dict[str, List[str]] = {}
    for name in scores:
        units.setdefault(name if select_by == "module" else layer_of(name), []).append(name)
    unit_score = {u: sum(scores[m] for m in ms) / len(ms) for u, ms in units.items()}
    unit_size = {u: sum(sizes[m] for m in ms) for u, ms in units.items()}
    chosen, used = [], 0
    for unit in sorted(units, key=lambda u: (-unit_score[u], u)):
        if used + unit_size[unit] <= budget_params:
            chosen += units[unit]
            used += unit_size[unit]
    if not chosen:
        smallest = min(unit_size.values())
        raise SelectionError(
            f"adapter_conf.budget allows {budget_params:,} parameters, less than the smallest "
            f"{select_by} ({smallest:,} LoRA parameters at this rank): raise the budget")
    return chosen


def make_selection(model: nn.Module, stats: GradStats, rank: int, budget=DEFAULT_BUDGET,
                   select_by: str = "module", **info) -> dict:
    """The content of ``la_selection.json``: every candidate module with its score and rank,
    the chosen set, the budget and the share reached."""
    check_budget(budget, select_by)
    per_module = stats.scores()
    modules = lora_modules(model)
    sizes = {n: lora_size(m, rank) for n, m in modules.items()}
    raw_total = sum(sizes.values())
    limit = budget_parameters(budget, raw_total)
    importance = {n: per_module[n]["score"] for n in modules}
    chosen = select(importance, sizes, limit, select_by)
    ranked = sorted(modules, key=lambda n: (-importance[n], n))
    chosen_params = sum(sizes[n] for n in chosen)
    rows = []
    for r, name in enumerate(ranked, 1):
        part, layer, kind = parse_module(name)
        rows.append({"name": name, "part": part, "layer": layer, "type": kind, "rank": r,
                     "score": importance[name], "score_A": per_module[name].get("A", 0.0),
                     "score_B": per_module[name].get("B", 0.0), "params": sizes[name],
                     "chosen": name in chosen})
    return {"method": "la_lora", "lora_rank": rank, "budget": budget, "select_by": select_by,
            "budget_params": limit, "raw_lora_params": raw_total, "chosen_params": chosen_params,
            "share": chosen_params / raw_total, "num_chosen": len(chosen),
            "num_candidates": len(modules), "steps": stats.steps, "samples": stats.samples,
            **info, "chosen": [n for n in ranked if n in chosen], "modules": rows}


def write_json(obj: dict, path: Path):
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def load_selection(path: Union[str, Path], model: Optional[nn.Module] = None,
                   candidates: Optional[List[str]] = None) -> dict:
    """Read a selection and check it against the model's candidate modules."""
    path = Path(path)
    if not path.is_file():
        raise SelectionError(f"LA selection {path}: file not found; run stage 7 (or give "
                             "--la_selection FILE)")
    try:
        sel = json.loads(path.read_text(encoding="utf-8"))
        chosen = list(sel["chosen"])
    except (ValueError, KeyError, TypeError) as e:
        raise SelectionError(f"LA selection {path}: not a selection file written by stage 7 ({e})")
    if not chosen:
        raise SelectionError(f"LA selection {path}: no module chosen")
    if candidates is None and model is not None:
        candidates = candidate_modules(model, ALL_LINEARS)
    if candidates is not None:
        missing = [n for n in chosen if n not in set(candidates)]
        if missing:
            raise SelectionError(
                f"LA selection {path}: {len(missing)} of its {len(chosen)} modules do not exist in "
                f"this model (e.g. {missing[0]}); it was made for another model (its "
                f"whisper_model: {sel.get('whisper_model', '?')}). Run stage 7 for this model.")
    return sel


# ---- the heat map
def plot_selection(sel: dict, path: Path, title: str = ""):
    """Importance (log10) over layers x module types, encoder and decoder; chosen modules boxed."""
    plot_panels([Panel(title or (f"LA-LoRA importance; red: chosen ({sel['num_chosen']} modules, "
                                 f"{100 * sel['share']:.1f}% of raw LoRA's parameters)"),
                       {r["name"]: r["score"] for r in sel["modules"]},
                       "log10 importance (mean of A and B scores)", log=True,
                       boxed=sel["chosen"])], path)


# ---- the method: stage 7 runs the pass and writes the selection, stage 8 trains on it
@dataclasses.dataclass
class LALoRAConfig(LoRAOptions, MethodConfig):
    budget: float = DEFAULT_BUDGET  # share of raw LoRA's parameters in (0, 1], or a count > 1
    select_by: str = "module"  # module: each Linear on its own; layer: whole blocks
    la_steps: int = 8  # batches in stage 7's pass
    selection: Optional[str] = None  # stage 7's la_selection.json (the driver gives it)

    def validate(self, method: str) -> None:
        super().validate(method)
        check_budget(self.budget, self.select_by)
        if self.la_steps < 1:
            raise AdapterConfigError(f"adapter_conf.la_steps = {self.la_steps}: must be >= 1")


class LALoRAMethod(LoRAMethod):
    config_class = LALoRAConfig
    prepare_output = "la_selection.json"
    prepare_conf_key = "selection"

    def __init__(self):
        super().__init__("la_lora", ALL_LINEARS, "the modules that stage 7 selects, under a "
                         "parameter budget")

    def inject(self, model: nn.Module, config: LALoRAConfig) -> None:
        """Fresh LoRA on the modules of ``config.selection`` alone, everything else frozen."""
        if config.selection is None:
            raise AdapterConfigError(
                "adapter_conf.selection is not set: la_lora trains the modules that stage 7 "
                "selects (exp/<asr_exp>/la_selection.json); run the recipe from stage 7, or "
                "give --adapter_conf selection=FILE")
        rank = self.rank_of(config)
        sel = load_selection(config.selection, model)
        add_lora(model, sel["chosen"], rank, config)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        logging.info(f"[espnet_lalora] la_lora: rank {rank} on {len(sel['chosen'])} of "
                     f"{sel.get('num_candidates', '?')} Linear layers ({config.selection})")
        if sel.get("chosen_params") not in (None, trainable):
            logging.warning(f"[espnet_lalora] la_lora: {trainable:,} trainable parameters, the "
                            f"selection says {sel['chosen_params']:,} (made at LoRA rank "
                            f"{sel.get('lora_rank')}, trained at rank {rank})")

    def prepare_note(self, config: LALoRAConfig) -> str:
        budget = config.budget
        return f"<= {100 * budget:.2f}" if budget <= 1 else f"<= {budget:,} parameters"

    def plots(self, exp_dir: Path) -> List[Path]:
        png = exp_dir / Path(self.prepare_output).with_suffix(".png")
        return [png] if png.is_file() else []

    def check_prepared(self, path: Path, args) -> str:
        model = build_model(args)
        sel = load_selection(path, candidates=candidate_modules(model, ALL_LINEARS))
        return (f"{path}: {len(sel['chosen'])} modules, all in this model (share "
                f"{100 * sel.get('share', float('nan')):.2f}% of raw LoRA at rank "
                f"{sel.get('lora_rank')})")

    def prepare(self, args, argv: List[str], out: Path) -> None:
        import argparse
        import time

        from espnet_lalora.progress import Progress

        parser = argparse.ArgumentParser(prog="la_lora stage 7")
        parser.add_argument("--steps", type=int, default=None,
                            help="batches in the pass (default: adapter_conf.la_steps)")
        steps = parser.parse_args(argv).steps
        t0 = time.monotonic()
        config = self.parse_config(
            {k: v for k, v in (args.adapter_conf or {}).items() if k != "selection"})
        rank = self.rank_of(config)
        steps = steps or config.la_steps
        if steps < 1:
            raise SelectionError(f"--steps {steps}: must be >= 1")
        model = build_model(args)
        names = candidate_modules(model, ALL_LINEARS)
        # A budget too small for one module fails now, not after the pass.
        sizes = {n: lora_size(model.get_submodule(n), rank) for n in names}
        select(dict.fromkeys(names, 0.0), sizes,
               budget_parameters(config.budget, sum(sizes.values())), config.select_by)
        add_lora(model, names, rank, config)
        rank_id, world = init_distributed(args.ngpu)
        device = f"cuda:{torch.cuda.current_device()}" if args.ngpu > 0 else "cpu"
        model.to(device)
        batches = train_batches(args)
        if steps > len(batches):
            logging.warning(f"la_lora stage 7: the epoch has {len(batches)} batches; the pass "
                            "uses all of them")
            steps = len(batches)
        mine = len(range(rank_id, steps, world))
        progress = (Progress(mine, "LA selection pass", unit="batch", every=2.0)
                    if rank_id == 0 else None)
        t1 = time.monotonic()
        stats = run_pass(model, batches, steps, device, progress, rank_id, world)
        pass_s = time.monotonic() - t1
        if rank_id != 0:
            return
        sel = make_selection(model, stats, rank, config.budget, config.select_by, seed=args.seed,
                             world_size=world,
                             whisper_model=args.encoder_conf.get("whisper_model"),
                             batch_size=args.batch_size, pass_seconds=round(pass_s, 2),
                             total_seconds=round(time.monotonic() - t0, 2),
                             train_data=[p[0] for p in args.train_data_path_and_name_and_type])
        write_json(sel, out)
        plot_selection(sel, out.with_suffix(".png"))
        logging.info(
            f"la_lora stage 7: {stats.steps} batches, {stats.samples} utterances in {pass_s:.1f} s"
            f" (all: {time.monotonic() - t0:.1f} s); chose {sel['num_chosen']} of "
            f"{sel['num_candidates']} modules, {sel['chosen_params']:,} parameters = "
            f"{100 * sel['share']:.2f}% of raw LoRA (budget {config.budget}); wrote {out} and "
            f"{out.with_suffix('.png')}")


METHODS = [LALoRAMethod()]
