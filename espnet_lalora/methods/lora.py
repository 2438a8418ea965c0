"""The adapter methods by name, as ESPnet adapter functions: ``create_adapter_fn(model, **conf)``.

Module names in ESPnet's Whisper model: ``encoder.encoders.blocks.{i}.attn.{query,key,value,out}``,
``...mlp.{0,2}`` and ``decoder.decoders.blocks.{i}.{attn,cross_attn}.{query,key,value,out}``,
``...mlp.{0,2}``. A target matches by name suffix, as in ESPnet (``query`` also matches
``cross_attn.query``); only Linear layers inside Whisper blocks are candidates.

Every LoRA method is a placement (which modules, which rank) of the one ``LoRALinear``; BitFit
trains the bias vectors instead. Whatever the method, everything else is frozen.
"""

import difflib
import functools
import inspect
import logging
from typing import Dict, List, NamedTuple, Optional

from torch import nn

from espnet_lalora.lora import (freeze_all_but, inject_lora, is_lora_parameter, log_trainable,
                                matching_linears)

ALL_LINEARS = ["query", "key", "value", "out", "mlp.0", "mlp.2"]
DEFAULT_RANK = 8


class Placement(NamedTuple):
    targets: List[str]
    fixed_rank: Optional[int]  # None: adapter_conf.rank (default 8)
    where: str


# The LA-LoRA paper's hand-made placements (Han et al., ISCSLP 2024) and raw LoRA.
PLACEMENTS: Dict[str, Placement] = {
    "lora": Placement(ALL_LINEARS, None, "every Linear of every block (attention and MLP)"),
    "aw_lora": Placement(["query", "key", "value", "out"], None,
                         "attention projections (self and cross), MLPs frozen"),
    "vo_lora": Placement(["value", "out"], None, "value and out of every attention"),
    "r1_lora": Placement(ALL_LINEARS, 1, "every Linear of every block, rank 1"),
}


class AdapterConfigError(ValueError):
    pass


def _check_rank(rank, method):
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise AdapterConfigError(
            f"adapter_conf.rank = {rank!r} for adapter {method!r}: the rank must be an integer "
            ">= 1 (e.g. rank: 8)")
    fixed = PLACEMENTS[method].fixed_rank if method in PLACEMENTS else None
    if fixed is not None and rank != fixed:
        raise AdapterConfigError(
            f"adapter_conf.rank = {rank} for adapter {method!r}, which is rank {fixed} by "
            f"definition; drop the key, or use adapter: lora with rank: {rank}")


def block_linears(model: nn.Module) -> List[str]:
    return [n for n in matching_linears(model, ALL_LINEARS) if ".blocks." in f".{n}"]


def candidate_modules(model: nn.Module, target_modules: List[str]) -> List[str]:
    """The block Linear layers that ``target_modules`` names; each pattern must match one."""
    available = block_linears(model)
    for target in target_modules:
        if not any(n == target or n.endswith("." + target) for n in available):
            suffixes = sorted({".".join(n.split(".")[-k:]) for n in available for k in (1, 2)})
            near = difflib.get_close_matches(target, suffixes, n=4, cutoff=0.3)
            raise AdapterConfigError(
                f"adapter_conf.target_modules: {target!r} matches no Linear layer of a Whisper "
                f"block; nearest names: {near or suffixes[:6]} (e.g. {available[0]})")
    return [n for n in available
            if any(n == t or n.endswith("." + t) for t in target_modules)]


def create_lora_adapter(model: nn.Module, rank: Optional[int] = None,
                        alpha: Optional[float] = None, dropout_rate: float = 0.0,
                        target_modules: Optional[List[str]] = None, bias_type: str = "none",
                        method: str = "lora"):
    """LoRA on ``target_modules`` (default: the method's placement), everything else frozen.

    Accepts ESPnet's own ``lora`` adapter_conf keys (rank, alpha, dropout_rate, target_modules,
    bias_type); ``bias_type`` other than "none" is not supported. ``alpha`` defaults to the rank
    (scaling 1).
    """
    placement = PLACEMENTS[method]
    rank = (placement.fixed_rank or DEFAULT_RANK) if rank is None else rank
    _check_rank(rank, method)
    if bias_type != "none":
        raise AdapterConfigError(f"adapter_conf.bias_type = {bias_type!r}: only 'none' is "
                                 "supported (train biases with the bitfit method instead)")
    names = candidate_modules(model, list(target_modules or placement.targets))
    inject_lora(model, {n: rank for n in names}, alpha=float(alpha if alpha is not None else rank),
                dropout=dropout_rate)
    freeze_all_but(model, is_lora_parameter)
    logging.info(f"[espnet_lalora] {method}: rank {rank} on {len(names)} Linear layers")
    log_trainable(model, method)
    return model


def is_bias(name: str) -> bool:
    return name.endswith(".bias")


def create_bitfit_adapter(model: nn.Module, method: str = "bitfit"):
    """BitFit (Ben Zaken et al., ACL 2022): train every bias vector of the model (convolutions,
    Linear and LayerNorm), nothing else. No new parameters: the model is its own merged export."""
    if not any(is_bias(n) for n, _ in model.named_parameters()):
        raise AdapterConfigError("bitfit: the model has no bias parameter")
    freeze_all_but(model, is_bias)
    log_trainable(model, method)
    return model


ADAPTERS = {name: functools.partial(create_lora_adapter, method=name) for name in PLACEMENTS}
ADAPTERS["bitfit"] = create_bitfit_adapter
# LA-LoRA: the modules that stage 7 selects (espnet_lalora/la_lora.py imports this module)
from espnet_lalora.la_lora import create_la_lora_adapter  # noqa: E402

ADAPTERS["la_lora"] = create_la_lora_adapter


def check_adapter_conf(method: str, conf: dict):
    """Validate ``adapter_conf`` for ``method`` without building a model."""
    if method not in ADAPTERS:
        raise AdapterConfigError(f"unknown adapter {method!r}; known methods: "
                                 f"{', '.join(sorted(ADAPTERS))}")
    accepted = set(inspect.signature(ADAPTERS[method]).parameters) - {"model", "method"}
    unknown = sorted(set(conf) - accepted)
    if unknown:
        raise AdapterConfigError(f"adapter_conf has unknown key(s) {unknown} for {method!r}; "
                                 f"accepted: {sorted(accepted) or 'none'}")
    if "rank" in conf:
        _check_rank(conf["rank"], method)
