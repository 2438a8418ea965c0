"""S2-LoRA, sparsely shared LoRA (Liu et al., ICASSP 2024): one pair of low-rank matrices shared by
every adapted weight, each weight keeping only its own vector of rank coefficients, kept sparse.

The reading implemented here (the paper's abstract leaves shapes, penalty and ranks open; see
docs/methods.md): AdaLoRA's P Lambda Q with P and Q shared,

    delta W_m = scaling * B_g diag(lambda_m) A_g          (scaling = alpha / rank)

for every block Linear m of the placement, g its sharing group (``sharing``):

- ``shape`` (default): one (A, B) pair per weight shape. Whisper's block Linears have three shapes
  (d x d attention, d -> 4d ``mlp.0``, 4d -> d ``mlp.2``), so three pairs serve the 96 weights of
  Whisper base, encoder and decoder alike.
- ``sliced``: one pair for everything, A of rank x max(in), B of max(out) x rank; a weight uses the
  top-left slices that fit its shape.
- ``none``: a pair per weight (no sharing; sparse per-weight coefficients only, an ablation).

Initialization: lambda = 0 (delta W = 0 at the start), A with orthonormal rows and B with
orthonormal columns, so that a coefficient is a singular value of the update (in units of the
scaling). AdaLoRA's own initialization (A and B normal with std 0.02) makes the update grow as the
cube of the steps, too slowly for a few hundred steps (measured: docs/methods.md); the default
``alpha`` (scaling 24 at rank 16) gives each coefficient's direction about the first-step size of a
raw-LoRA direction (rank 8, alpha 16) under Adam.
Sparsity: after every optimizer step, lambda <- sign(lambda) max(|lambda| - lr * sparsity_weight, 0)
(the proximal step of an L1 penalty ``sparsity_weight * |lambda|_1`` at the step's learning rate,
decoupled from Adam's moments as AdamW decouples weight decay), so unneeded coefficients are
exactly zero and the learned rank of a weight is the count of its non-zero coefficients. The
layer is a ``LoRALinear`` whose A and B are built from the shared pair and lambda, so it trains on
the same fused autograd function and merges the same way.
"""

import dataclasses
import logging
import math
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

from espnet_lalora.methods.base import AdapterConfigError, MethodConfig, freeze_all_but
from espnet_lalora.methods.lora import ALL_LINEARS, LoRAMethod, LoRAOptions, candidate_modules
from espnet_lalora.methods.lora_layer import LoRALinear, _set_submodule

SHARING = ("shape", "sliced", "none")
DEFAULT_S2_RANK = 16
DEFAULT_S2_SCALING = 24.0  # alpha / rank when alpha is not given (why: the module's docstring)
SHARED = "s2_lora"  # the model attribute that holds the shared pairs


@dataclasses.dataclass
class S2LoRAConfig(LoRAOptions, MethodConfig):
    target_modules: Optional[List[str]] = None  # None: every Linear of every block
    sharing: str = "shape"  # shape | sliced | none
    sparsity_weight: float = 0.3  # L1 weight: threshold lr * weight after every step; 0: off

    def validate(self, method: str) -> None:
        super().validate(method)
        if self.sharing not in SHARING:
            raise AdapterConfigError(f"adapter_conf.sharing = {self.sharing!r} for adapter "
                                     f"{method!r}: must be one of {', '.join(SHARING)}")
        if not (math.isfinite(self.sparsity_weight) and self.sparsity_weight >= 0):
            raise AdapterConfigError(
                f"adapter_conf.sparsity_weight = {self.sparsity_weight} for adapter {method!r}: "
                "must be >= 0 (0 turns the sparsity off; e.g. 0.3)")


class SharedFactors(nn.Module):
    """The shared A (rank x in) and B (out x rank) of each sharing group."""

    def __init__(self, shapes: Dict[str, Tuple[int, int]], rank: int, device, dtype):
        super().__init__()
        self.A, self.B = nn.ParameterDict(), nn.ParameterDict()
        for key, (out_features, in_features) in shapes.items():
            self.A[key] = nn.Parameter(torch.empty(rank, in_features, device=device, dtype=dtype))
            self.B[key] = nn.Parameter(torch.empty(out_features, rank, device=device, dtype=dtype))
            # Orthonormal rows of A and columns of B: lambda_m are then the singular values of
            # a weight's update (over the scaling) at the start, and they move it at once.
            nn.init.orthogonal_(self.A[key])
            nn.init.orthogonal_(self.B[key])


class S2LoRALinear(LoRALinear):
    """A LoRALinear whose ``B A`` is ``B_g diag(lambda) A_g``, sliced to this weight's shape."""

    def __init__(self, base: nn.Linear, shared: SharedFactors, key: str, rank: int,
                 alpha: float, dropout: float = 0.0):
        self._wrap(base, rank, alpha, dropout)
        self.lora_coeff = nn.Parameter(torch.zeros(rank, device=base.weight.device,
                                                   dtype=base.weight.dtype))
        self.key = key
        self._shared = (shared,)  # a tuple: the model holds the shared module once, not each layer

    def factors(self):
        shared = self._shared[0]
        lora_A = shared.A[self.key][:, :self.in_features]
        lora_B = shared.B[self.key][:self.out_features]
        return self.lora_coeff[:, None] * lora_A, lora_B


def group_of(sharing: str, name: str, linear: nn.Linear) -> str:
    if sharing == "shape":
        return f"{linear.out_features}x{linear.in_features}"
    if sharing == "sliced":
        return "all"
    return name.replace(".", "_")


def s2_modules(model: nn.Module) -> Dict[str, S2LoRALinear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, S2LoRALinear)}


def soft_threshold_(coeffs: List[torch.Tensor], threshold: float):
    """In place: c <- sign(c) max(|c| - threshold, 0)."""
    with torch.no_grad():
        for c in coeffs:
            c.copy_(c.sign() * (c.abs() - threshold).clamp_min(0))


class S2LoRAMethod(LoRAMethod):
    """LoRAMethod's rank, config check and counts; its own layer, shared pairs and sparsity."""

    config_class = S2LoRAConfig

    def __init__(self):
        super().__init__("s2_lora", ALL_LINEARS, "shared A and B (one pair per weight shape), a "
                         "sparse coefficient vector per adapted weight")

    def rank_of(self, config: S2LoRAConfig) -> int:
        return config.rank if config.rank is not None else DEFAULT_S2_RANK

    def inject(self, model: nn.Module, config: S2LoRAConfig) -> None:
        rank = self.rank_of(config)
        alpha = float(config.alpha if config.alpha is not None else DEFAULT_S2_SCALING * rank)
        names = candidate_modules(model, list(config.target_modules or self.targets))
        linears = {n: model.get_submodule(n) for n in names}
        groups = {n: group_of(config.sharing, n, linear) for n, linear in linears.items()}
        shapes: Dict[str, Tuple[int, int]] = {}
        for name, linear in linears.items():
            out_f, in_f = shapes.get(groups[name], (0, 0))
            shapes[groups[name]] = (max(out_f, linear.out_features),
                                    max(in_f, linear.in_features))
        weight = next(iter(linears.values())).weight
        shared = SharedFactors(shapes, rank, weight.device, weight.dtype)
        setattr(model, SHARED, shared)
        for name, linear in linears.items():
            _set_submodule(model, name, S2LoRALinear(linear, shared, groups[name], rank, alpha,
                                                     config.dropout_rate))
        freeze_all_but(model, self.adapter_parameter)
        logging.info(f"[espnet_lalora] s2_lora: rank {rank}, {len(shapes)} shared pair(s) "
                     f"({config.sharing}) for {len(names)} Linear layers, sparsity weight "
                     f"{config.sparsity_weight}")

    def merge(self, model: nn.Module) -> int:
        count = super().merge(model)  # needs the shared pairs: they go after
        delattr(model, SHARED)
        return count

    def adapter_parameter(self, name: str) -> bool:
        return name.startswith(SHARED + ".") or name.endswith(".lora_coeff")

    def optimizer_step_hook(self, model: nn.Module, args):
        weight = self.parse_config(args.adapter_conf).sparsity_weight
        layers = s2_modules(model)
        if weight == 0 or not layers:
            return None
        coeff_ids = {id(m.lora_coeff) for m in layers.values()}
        steps = [0]

        def proximal_step(optimizer):
            for group in optimizer.param_groups:
                mine = [p for p in group["params"] if id(p) in coeff_ids]
                if mine:
                    soft_threshold_(mine, group["lr"] * weight)
            steps[0] += 1
            if steps[0] % 100 == 0:
                kept = sum(int((m.lora_coeff != 0).sum()) for m in layers.values())
                total = sum(m.rank for m in layers.values())
                logging.info(f"[espnet_lalora] s2_lora: {kept} of {total} coefficients "
                             f"non-zero after {steps[0]} steps of this process")

        return proximal_step

    def rank_pattern(self, model: nn.Module):
        return {n: {"rank": int((m.lora_coeff != 0).sum()), "of": m.rank,
                    "l1": float(m.lora_coeff.detach().abs().sum())}
                for n, m in s2_modules(model).items()}


METHODS = [S2LoRAMethod()]
