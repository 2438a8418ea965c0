"""LA-LoRA (Han et al., ISCSLP 2024): LoRA on the modules that matter, chosen by gradient statistics.

Stage 7 attaches LoRA to every candidate module (the Linear layers of the Whisper blocks), runs a
short pass over the training batches (ESPnet's own iterator: what training sees) and sums, per
``lora_A``/``lora_B``, the squared gradients (an empirical Fisher diagonal). The paper's scoring
rule: a tensor's score is that sum averaged over its elements and divided by the number of samples;
a module's importance is the mean of its A and B scores. The most important modules that fit the
budget are kept (``la_selection.json``) and stage 8 trains fresh LoRA on them alone
(``create_la_lora_adapter``).

Budget (``adapter_conf.budget``): a number in (0, 1] is a share of raw LoRA's trainable parameters
(same rank, every candidate module; default 0.1); an integer > 1 is a parameter count.
``select_by``: ``module`` (each Linear on its own) or ``layer`` (whole blocks, importance = mean of
their modules). The modules are taken in order of importance, each one that still fits is kept.

Several processes (ESPnet's DDP ranks, torchrun): each takes whole batches (batch i goes to rank
i mod world size), and the sums and the sample count are summed over ranks (all_reduce), so the
scores equal those of one process on the same batches.
"""

import json
import logging
import re
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Union

import torch
from torch import nn

from espnet_lalora.lora import (freeze_all_but, inject_lora, is_lora_parameter, log_trainable,
                                lora_modules)

DEFAULT_BUDGET = 0.1
SELECT_BY = ("module", "layer")
ENCODER_TYPES = ["attn.query", "attn.key", "attn.value", "attn.out", "mlp.0", "mlp.2"]
DECODER_TYPES = ENCODER_TYPES[:4] + ["cross_attn.query", "cross_attn.key", "cross_attn.value",
                                     "cross_attn.out"] + ENCODER_TYPES[4:]
_NAME = re.compile(r"^(encoder|decoder)\..*\bblocks\.(\d+)\.(.+)$")


class SelectionError(ValueError):
    pass


def parse_module(name: str):
    """``decoder.decoders.blocks.3.cross_attn.value`` -> ("decoder", 3, "cross_attn.value")"""
    m = _NAME.match(name)
    if not m:
        raise SelectionError(f"{name}: not a module of a Whisper block")
    return m.group(1), int(m.group(2)), m.group(3)


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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)


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
        from espnet_lalora.methods import ALL_LINEARS, candidate_modules
        candidates = candidate_modules(model, ALL_LINEARS)
    if candidates is not None:
        missing = [n for n in chosen if n not in set(candidates)]
        if missing:
            raise SelectionError(
                f"LA selection {path}: {len(missing)} of its {len(chosen)} modules do not exist in "
                f"this model (e.g. {missing[0]}); it was made for another model (its "
                f"whisper_model: {sel.get('whisper_model', '?')}). Run stage 7 for this model.")
    return sel


# ---- stage 8: the ESPnet adapter
def create_la_lora_adapter(model: nn.Module, rank: int = 8, alpha: Optional[float] = None,
                           dropout_rate: float = 0.0, selection: Optional[str] = None,
                           budget=DEFAULT_BUDGET, select_by: str = "module", la_steps: int = 8):
    """Fresh LoRA on the modules of ``selection`` (stage 7's la_selection.json) alone, everything
    else frozen. ``budget``, ``select_by`` and ``la_steps`` are stage 7's options."""
    from espnet_lalora.methods import AdapterConfigError, _check_rank

    _check_rank(rank, "la_lora")
    check_budget(budget, select_by)
    if selection is None:
        raise AdapterConfigError(
            "adapter_conf.selection is not set: la_lora trains the modules that stage 7 selects "
            "(exp/<asr_exp>/la_selection.json); run the recipe from stage 7, or give "
            "--adapter_conf selection=FILE")
    sel = load_selection(selection, model)
    inject_lora(model, {n: rank for n in sel["chosen"]},
                alpha=float(alpha if alpha is not None else rank), dropout=dropout_rate)
    trainable = freeze_all_but(model, is_lora_parameter)
    logging.info(f"[espnet_lalora] la_lora: rank {rank} on {len(sel['chosen'])} of "
                 f"{sel.get('num_candidates', '?')} Linear layers ({selection})")
    if sel.get("chosen_params") not in (None, trainable):
        logging.warning(f"[espnet_lalora] la_lora: {trainable:,} trainable parameters, the "
                        f"selection says {sel['chosen_params']:,} (made at LoRA rank "
                        f"{sel.get('lora_rank')}, trained at rank {rank})")
    log_trainable(model, "la_lora")
    return model


# ---- the heat map
def plot_selection(sel: dict, path: Path, title: str = ""):
    """Importance (log10) over layers x module types, encoder and decoder; chosen modules boxed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = sel["modules"]
    parts = [("encoder", ENCODER_TYPES), ("decoder", DECODER_TYPES)]
    values = [r["score"] for r in rows if r["score"] > 0]
    vmin, vmax = (np.log10(min(values)), np.log10(max(values))) if values else (0, 1)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), gridspec_kw={"wspace": 0.45})
    for ax, (part, types) in zip(axes, parts):
        layers = sorted({r["layer"] for r in rows if r["part"] == part})
        grid = np.full((len(types), len(layers)), np.nan)
        for r in rows:
            if r["part"] == part and r["type"] in types:
                grid[types.index(r["type"]), layers.index(r["layer"])] = (
                    np.log10(r["score"]) if r["score"] > 0 else np.nan)
        im = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=vmin, vmax=vmax)
        for r in rows:
            if r["part"] == part and r["chosen"]:
                y, x = types.index(r["type"]), layers.index(r["layer"])
                ax.add_patch(plt.Rectangle((x - 0.5, y - 0.5), 1, 1, fill=False, ec="red", lw=2.2))
        ax.set_xticks(range(len(layers)), layers)
        ax.set_yticks(range(len(types)), types)
        ax.set_xlabel("layer (block)")
        ax.set_title(part)
    fig.colorbar(im, ax=axes, label="log10 importance (mean of A and B scores)")
    fig.suptitle(title or (f"LA-LoRA importance; red: chosen ({sel['num_chosen']} modules, "
                           f"{100 * sel['share']:.1f}% of raw LoRA's parameters)"))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)
