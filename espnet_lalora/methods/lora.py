"""LoRA placements: raw LoRA (Hu et al. 2021), the LA-LoRA paper's hand-made AW-, VO- and R1-LoRA
(Han et al., ISCSLP 2024), and QV-LoRA (Hu et al.'s own default, query and value).

Each is a choice of modules and rank for the one ``LoRALinear``; everything else is frozen.
Module names in ESPnet's Whisper model: ``encoder.encoders.blocks.{i}.attn.{query,key,value,out}``,
``...mlp.{0,2}`` and ``decoder.decoders.blocks.{i}.{attn,cross_attn}.{query,key,value,out}``,
``...mlp.{0,2}``. A target matches by name suffix, as in ESPnet (``query`` also matches
``cross_attn.query``); only Linear layers inside Whisper blocks are candidates.
"""

import dataclasses
import difflib
import logging
from typing import List, Optional

from torch import nn

from espnet_lalora.methods.base import AdapterConfigError, Method, MethodConfig, freeze_all_but
from espnet_lalora.methods.lora_layer import (LoRALinear, inject_lora, is_lora_parameter,
                                              lora_modules, matching_linears, merge_lora)

ALL_LINEARS = ["query", "key", "value", "out", "mlp.0", "mlp.2"]
DEFAULT_RANK = 8  # the one default rank (raw LoRA's, and the reference of "% of raw LoRA")


def check_rank(rank, method: str, fixed: Optional[int] = None):
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise AdapterConfigError(
            f"adapter_conf.rank = {rank!r} for adapter {method!r}: the rank must be an integer "
            ">= 1 (e.g. rank: 8)")
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


@dataclasses.dataclass
class LoRAOptions:
    """The options every LoRA method shares (ESPnet's own ``lora`` keys)."""

    rank: Optional[int] = None  # None: the method's rank (DEFAULT_RANK, R1-LoRA 1)
    alpha: Optional[float] = None  # None: the rank (scaling alpha / r = 1)
    dropout_rate: float = 0.0

    def validate(self, method: str) -> None:
        if self.rank is not None:
            check_rank(self.rank, method)
        if not 0.0 <= self.dropout_rate < 1.0:
            raise AdapterConfigError(f"adapter_conf.dropout_rate = {self.dropout_rate} for "
                                     f"adapter {method!r}: must be in [0, 1)")


@dataclasses.dataclass
class LoRAConfig(LoRAOptions, MethodConfig):
    target_modules: Optional[List[str]] = None  # None: the method's placement
    bias_type: str = "none"

    def validate(self, method: str) -> None:
        super().validate(method)
        if self.bias_type != "none":
            raise AdapterConfigError(f"adapter_conf.bias_type = {self.bias_type!r}: only 'none' "
                                     "is supported (train biases with the bitfit method instead)")


class LoRAMethod(Method):
    """LoRA on a fixed set of module types at one rank: the placement is data."""

    config_class = LoRAConfig

    def __init__(self, name: str, targets: List[str], description: str,
                 fixed_rank: Optional[int] = None):
        self.name, self.targets, self.description = name, targets, description
        self.fixed_rank = fixed_rank

    def rank_of(self, config) -> int:
        return config.rank if config.rank is not None else (self.fixed_rank or DEFAULT_RANK)

    def parse_config(self, conf):
        config = super().parse_config(conf)
        check_rank(self.rank_of(config), self.name, self.fixed_rank)
        return config

    def inject(self, model: nn.Module, config: LoRAConfig) -> None:
        rank = self.rank_of(config)
        names = candidate_modules(model, list(config.target_modules or self.targets))
        add_lora(model, names, rank, config)
        logging.info(f"[espnet_lalora] {self.name}: rank {rank} on {len(names)} Linear layers")

    def merge(self, model: nn.Module) -> int:
        return merge_lora(model)

    def adapter_parameter(self, name: str) -> bool:
        return is_lora_parameter(name)

    def adapted_modules(self, model: nn.Module):
        return {n: m.rank for n, m in lora_modules(model).items()}


def add_lora(model: nn.Module, names: List[str], rank: int, options: LoRAOptions):
    """Fresh LoRA of ``rank`` on ``names``, everything else frozen; alpha defaults to the rank."""
    alpha = float(options.alpha if options.alpha is not None else rank)
    inject_lora(model, {n: rank for n in names}, alpha=alpha, dropout=options.dropout_rate)
    freeze_all_but(model, is_lora_parameter)


METHODS = [
    LoRAMethod("lora", ALL_LINEARS, "every Linear of every block (attention and MLP)"),
    LoRAMethod("aw_lora", ["query", "key", "value", "out"],
               "attention projections (self and cross), MLPs frozen"),
    LoRAMethod("vo_lora", ["value", "out"], "value and out of every attention"),
    LoRAMethod("r1_lora", ALL_LINEARS, "every Linear of every block, rank 1", fixed_rank=1),
]

__all__ = ["ALL_LINEARS", "DEFAULT_RANK", "LoRALinear", "LoRAMethod", "METHODS"]
