"""The adapter methods by name, as ESPnet adapter functions: ``create_adapter_fn(model, **conf)``.

Module names in ESPnet's Whisper model: ``encoder.encoders.blocks.{i}.attn.{query,key,value,out}``,
``...mlp.{0,2}`` and ``decoder.decoders.blocks.{i}.{attn,cross_attn}.{query,key,value,out}``,
``...mlp.{0,2}``. A target matches by name suffix, as in ESPnet (``query`` also matches
``cross_attn.query``); only Linear layers inside Whisper blocks are candidates.
"""

import inspect
import logging
from typing import List, Optional

from torch import nn

from espnet_lalora.lora import (freeze_all_but, inject_lora, is_lora_parameter, log_trainable,
                                matching_linears)

ALL_LINEARS = ["query", "key", "value", "out", "mlp.0", "mlp.2"]

# name -> default target modules (a placement is a choice of modules and ranks, not new code)
PLACEMENTS = {
    "lora": ALL_LINEARS,
}


class AdapterConfigError(ValueError):
    pass


def _check_rank(rank, method):
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise AdapterConfigError(
            f"adapter_conf.rank = {rank!r} for adapter {method!r}: the rank must be an integer "
            ">= 1 (e.g. rank: 8)")


def candidate_modules(model: nn.Module, target_modules: List[str]) -> List[str]:
    names = [n for n in matching_linears(model, target_modules) if ".blocks." in f".{n}"]
    if not names:
        raise AdapterConfigError(
            f"adapter_conf.target_modules = {target_modules} matches no Linear layer of a Whisper "
            f"block; names end with one of {ALL_LINEARS}")
    return names


def create_lora_adapter(model: nn.Module, rank: int = 8, alpha: Optional[float] = None,
                        dropout_rate: float = 0.0, target_modules: Optional[List[str]] = None,
                        bias_type: str = "none", method: str = "lora"):
    """LoRA on ``target_modules`` (default: the method's placement), everything else frozen.

    Accepts ESPnet's own ``lora`` adapter_conf keys (rank, alpha, dropout_rate, target_modules,
    bias_type); ``bias_type`` other than "none" is not supported.
    """
    _check_rank(rank, method)
    if bias_type != "none":
        raise AdapterConfigError(f"adapter_conf.bias_type = {bias_type!r}: only 'none' is "
                                 "supported (train biases with the bitfit method instead)")
    targets = list(target_modules or PLACEMENTS[method])
    names = candidate_modules(model, targets)
    inject_lora(model, {n: rank for n in names}, alpha=float(alpha if alpha is not None else rank),
                dropout=dropout_rate)
    freeze_all_but(model, is_lora_parameter)
    logging.info(f"[espnet_lalora] {method}: rank {rank} on {len(names)} Linear layers")
    log_trainable(model, method)
    return model


ADAPTERS = {
    "lora": create_lora_adapter,
}
from espnet_lalora.la_lora import create_la_lora_adapter  # noqa: E402  (issue 6)
ADAPTERS["la_lora"] = create_la_lora_adapter


def check_adapter_conf(method: str, conf: dict):
    """Validate ``adapter_conf`` for ``method`` without building a model."""
    if method not in ADAPTERS:
        raise AdapterConfigError(f"unknown adapter {method!r}; known: {sorted(ADAPTERS)}")
    accepted = set(inspect.signature(ADAPTERS[method]).parameters) - {"model", "method"}
    unknown = sorted(set(conf) - accepted)
    if unknown:
        raise AdapterConfigError(f"adapter_conf has unknown key(s) {unknown} for {method!r}; "
                                 f"accepted: {sorted(accepted)}")
    if "rank" in conf:
        _check_rank(conf["rank"], method)
