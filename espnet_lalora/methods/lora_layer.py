"""The one LoRA layer of every LoRA placement, and the code that puts it into a model.

``LoRALinear`` keeps loralib's parameter names (``lora_A``: r x in, ``lora_B``: out x r, scaling
alpha / r), so ESPnet's ``adapter_only`` save strategy and checkpoints of ESPnet's own LoRA work
with it. A placement (raw, AW, VO, R1, LA) is only a choice of modules and ranks.
"""

import math
from typing import Dict, Iterable, List, Optional

import torch
import torch.nn.functional as F
from torch import nn


class LoRALinear(nn.Linear):
    """``y = x W^T + b + scaling * dropout(x) A^T B^T``; B starts at zero, so training starts
    from the base model. ``merge()`` folds the update into W (zero inference overhead)."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0):
        self._wrap(base, rank, alpha, dropout)
        factory = dict(device=base.weight.device, dtype=base.weight.dtype)
        self.lora_A = nn.Parameter(torch.empty(rank, self.in_features, **factory))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, rank, **factory))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as loralib and PEFT

    def _wrap(self, base: nn.Linear, rank: int, alpha: float, dropout: float):
        """Take over ``base``'s weight and bias (shared, not copied); no update parameters yet."""
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        nn.Module.__init__(self)
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight, self.bias = base.weight, base.bias
        self.rank, self.alpha, self.scaling = rank, alpha, alpha / rank
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False
        self.base_class = type(base)

    def factors(self):
        """(A, B) of the update ``scaling * B A``; a subclass may build them from other
        parameters (S2-LoRA: shared A and B, its own coefficients)."""
        return self.lora_A, self.lora_B

    def delta_weight(self) -> torch.Tensor:
        lora_A, lora_B = self.factors()
        return (lora_B @ lora_A) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return self._base(x)
        lora_A, lora_B = self.factors()
        no_dropout = not self.training or isinstance(self.lora_dropout, nn.Identity)  # eval: id
        if (no_dropout and x.dtype == self.weight.dtype
                and not _autocast_enabled(x.device.type)):  # the common case, fused
            return _LoRALinearFunction.apply(x, self.weight, self.bias, lora_A, lora_B,
                                             self.scaling)
        h = F.linear(self.lora_dropout(x), lora_A.to(x.dtype)) * self.scaling
        return self._base(x) + F.linear(h, lora_B.to(x.dtype))

    def _base(self, x):
        # Whisper's Linear casts its weights to the input's dtype (fp16 inference, AMP).
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.weight.to(x.dtype), bias)

    # Checkpoints always hold the unmerged W, whatever the layer's state when saved: the format
    # stays that of loralib and ESPnet (no new key, so old checkpoints and partial ones, the
    # adapter_only / required_grad_only saves that hold A and B without W, load as before), and a
    # loaded update is never applied twice. A flag saved next to W would be wrong for a partial
    # checkpoint, whose W comes from the base model, not from the merged layer.
    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        if self.merged:
            with torch.no_grad():
                destination[prefix + "weight"] = (
                    self.weight - self.delta_weight().to(self.weight.dtype))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # A merged layer loads as an unmerged one would, then merges again with the loaded A, B
        # (on W loaded or kept, whichever of W, A, B the state holds).
        merged = self.merged
        self.unmerge()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if merged:
            self.merge()

    @torch.no_grad()
    def merge(self):
        if not self.merged:
            self.weight += self.delta_weight().to(self.weight.dtype)
            self.merged = True

    @torch.no_grad()
    def unmerge(self):
        if self.merged:
            self.weight -= self.delta_weight().to(self.weight.dtype)
            self.merged = False

    def to_plain_linear(self) -> nn.Linear:
        """The merged layer as the model's original Linear class, adapter gone."""
        self.merge()
        plain = self.base_class(self.in_features, self.out_features, bias=self.bias is not None,
                                device=self.weight.device, dtype=self.weight.dtype)
        plain.weight, plain.bias = self.weight, self.bias
        return plain

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"rank={self.rank}, alpha={self.alpha}, merged={self.merged}")


_autocast_takes_device = None  # whether torch.is_autocast_enabled takes a device type


def _autocast_enabled(device_type: str) -> bool:
    """``torch.is_autocast_enabled(device_type)``, which torch < 2.4 lacks: there it takes no
    argument and answers for CUDA, and CPU autocast has its own query. Tested at the first call."""
    global _autocast_takes_device
    if _autocast_takes_device is None:
        try:
            torch.is_autocast_enabled(device_type)
            _autocast_takes_device = True
        except TypeError:
            _autocast_takes_device = False
    if _autocast_takes_device:
        return torch.is_autocast_enabled(device_type)
    if device_type == "cpu":
        return torch.is_autocast_cpu_enabled()
    return torch.is_autocast_enabled()


class _LoRALinearFunction(torch.autograd.Function):
    """``x W^T + b + s (x A^T) B^T`` as three matrix products forward and at most five backward,
    the update added inside the GEMM (``addmm_``). Autograd's composition of the same formula
    makes extra passes over the N x out output, forward and backward (the scaling and the sum):
    1.13x the frozen floor against 1.08x for this (docs/benchmarks.md)."""

    @staticmethod
    def forward(ctx, x, weight, bias, lora_A, lora_B, scaling):
        x2 = x.reshape(-1, x.shape[-1])
        hs = (x2 @ lora_A.t()).mul_(scaling)  # N x r: scaling applied on the small side
        y = torch.addmm(bias, x2, weight.t()) if bias is not None else x2 @ weight.t()
        y.addmm_(hs, lora_B.t())
        need_x = ctx.needs_input_grad[0]  # false in the first block: keep W out of memory
        ctx.save_for_backward(x2, hs, weight if need_x else None, lora_A if need_x else None,
                              lora_B)
        ctx.scaling, ctx.x_shape = scaling, x.shape
        return y.view(*x.shape[:-1], y.shape[-1])

    @staticmethod
    def backward(ctx, grad):
        x2, hs, weight, lora_A, lora_B = ctx.saved_tensors
        g = grad.reshape(-1, grad.shape[-1])
        need_x, need_w, need_b, need_a, need_bb, _ = ctx.needs_input_grad
        gh = (g @ lora_B).mul_(ctx.scaling) if (need_x or need_a) else None  # N x r
        grad_x = grad_w = grad_b = grad_a = grad_bb = None
        if need_x:
            grad_x = (g @ weight).addmm_(gh, lora_A).view(ctx.x_shape)
        if need_w:  # only when the base weight is trained too
            grad_w = g.t() @ x2
        if need_b:
            grad_b = g.sum(0)
        if need_a:
            grad_a = gh.t() @ x2
        if need_bb:
            grad_bb = g.t() @ hs
        return grad_x, grad_w, grad_b, grad_a, grad_bb, None


def matching_linears(model: nn.Module, target_modules: Iterable[str]) -> List[str]:
    """Names of the ``nn.Linear`` modules whose name ends with one of ``target_modules``
    (ESPnet's convention: ``"query"`` matches ``attn.query`` and ``cross_attn.query``)."""
    targets = list(target_modules)
    return [name for name, module in model.named_modules()
            if isinstance(module, nn.Linear) and not isinstance(module, LoRALinear)
            and any(name == t or name.endswith("." + t) for t in targets)]


def _set_submodule(model: nn.Module, name: str, module: nn.Module):
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def inject_lora(model: nn.Module, ranks: Dict[str, int], alpha_over_rank: Optional[float] = None,
                alpha: Optional[float] = None, dropout: float = 0.0) -> List[str]:
    """Replace each named Linear by a ``LoRALinear`` of the given rank.

    ``alpha`` fixes alpha for every module (scaling alpha / r, loralib and PEFT's convention);
    ``alpha_over_rank`` fixes the scaling instead, for placements that mix ranks.
    """
    for name, rank in ranks.items():
        base = model.get_submodule(name)
        if not isinstance(base, nn.Linear):
            raise ValueError(f"{name} is a {type(base).__name__}, not a Linear")
        module_alpha = alpha if alpha is not None else alpha_over_rank * rank
        _set_submodule(model, name, LoRALinear(base, rank, module_alpha, dropout))
    return list(ranks)


def lora_modules(model: nn.Module) -> Dict[str, LoRALinear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, LoRALinear)}


def is_lora_parameter(name: str) -> bool:
    return name.endswith(".lora_A") or name.endswith(".lora_B")


def merge_lora(model: nn.Module) -> int:
    """Fold every LoRA update into its weight and put the plain Linear back; return the count."""
    modules = lora_modules(model)
    if not modules:
        raise ValueError("the model has no LoRA layer: nothing to merge (a model trained with "
                         "use_adapter: false, or with bitfit, is already a plain model)")
    for name, module in modules.items():
        _set_submodule(model, name, module.to_plain_linear())
    return len(modules)
