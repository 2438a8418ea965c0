"""The layer of LoRA language experts: E LoRA experts of one rank per adapted Linear, stacked
(``experts_A``: E x r x in, ``experts_B``: E x out x r). The model's router
(:mod:`.expert_router`) says which expert each row of the batch uses: row n gets
``scaling * B_e A_e x_n``, e its expert; a route of ``NO_EXPERT`` is the base model, ``FUSED``
the uniform fusion. The same layer merges to a plain Linear with any weights over the experts
(uniform, learned, one-hot: one model per language). Training routes by the transcript's
language token (:func:`inject_experts` registers the forward pre-hook). The bundle format:
:mod:`.expert_bundle`; the methods: :mod:`.lang_experts`.
"""

import math
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from espnet_lalora.methods.expert_router import FUSED, ExpertRouter
from espnet_lalora.methods.lora import DEFAULT_RANK, LoRAOptions
from espnet_lalora.methods.lora_layer import (LoRALinear, _autocast_enabled, _LoRALinearFunction,
                                              _set_submodule, merge_lora)

EXPERT_PARAMETERS = (".experts_A", ".experts_B")


class ExpertLoRALinear(LoRALinear):
    """A Linear with E LoRA experts of one rank (and, for a distillation student, its own LoRA:
    ``lora_A``, ``lora_B``, what ``merge`` folds in). Without a student, ``merge`` folds in the
    experts weighted by the router's fusion weights (uniform by default)."""

    def __init__(self, base: nn.Linear, name: str, router: ExpertRouter, rank: int,
                 alpha: float, student: Optional[LoRAOptions] = None):
        n_experts = len(router.languages)
        if student is not None:
            s_rank = student.rank or DEFAULT_RANK
            LoRALinear.__init__(self, base, s_rank, float(student.alpha or s_rank),
                                student.dropout_rate)
        else:
            self._wrap(base, rank * n_experts, alpha * n_experts, 0.0)  # scaling alpha / rank
        factory = dict(device=base.weight.device, dtype=base.weight.dtype)
        self.experts_A = nn.Parameter(torch.empty(n_experts, rank, self.in_features, **factory))
        self.experts_B = nn.Parameter(torch.zeros(n_experts, self.out_features, rank, **factory))
        for a in self.experts_A:
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))  # each expert as a fresh LoRA
        self.expert_rank, self.expert_scaling = rank, alpha / rank
        self.has_student = student is not None
        self.group = router.group_of(name)
        object.__setattr__(self, "_router", router)  # shared, not a submodule of every layer

    def expert_factors(self, weights: torch.Tensor):
        """(A, B) of ``scaling * B A = sum_e w_e scaling_e B_e A_e`` (rank E*r), so the fused
        update runs and merges as one LoRA."""
        n, r = self.experts_A.shape[:2]
        lora_A = self.experts_A.reshape(n * r, self.in_features)
        lora_B = (self.experts_B * weights.to(self.experts_B.dtype)[:, None, None])
        lora_B = lora_B.permute(1, 0, 2).reshape(self.out_features, n * r)
        return lora_A, lora_B * (self.expert_scaling / self.scaling)

    def factors(self):
        if self.has_student:
            return self.lora_A, self.lora_B
        return self.expert_factors(self._router.weights(self.group, self.weight.device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        router = self._router
        if self.merged or (router.mode == "student" and self.has_student):
            return super().forward(x)  # merged weights, or the student's own LoRA
        route = router.route
        if router.mode == "fused" or route is None:  # no route: what the model merges to
            return self._base(x) + self._fused_delta(x, router.weights(self.group, x.device))
        if route.shape[0] != x.shape[0]:
            raise RuntimeError(
                f"lang_experts: the batch has {x.shape[0]} rows but the route has "
                f"{route.shape[0]}; set it with model.lang_router.route_languages([...]) "
                "(training sets it from the transcript)")
        fast = x.dtype == self.weight.dtype and not _autocast_enabled(x.device.type)
        if router.single is not None and fast:  # one expert for all rows: a plain LoRA
            e = router.single
            return _LoRALinearFunction.apply(x, self.weight, self.bias, self.experts_A[e],
                                             self.experts_B[e], self.expert_scaling)
        if fast and not torch.is_grad_enabled():  # several experts, decoding
            return self._masked_forward(x)
        return self._base(x) + self._gathered_delta(x, route)  # several experts, training

    def _fused_delta(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """The experts' update fused with ``weights`` over them: one LoRA of rank E*r."""
        lora_A, lora_B = self.expert_factors(weights)
        return F.linear(F.linear(x, lora_A.to(x.dtype)) * self.scaling, lora_B.to(x.dtype))

    def _gathered_delta(self, x: torch.Tensor, route: torch.Tensor) -> torch.Tensor:
        """Multi-LoRA serving: each row's own expert, gathered (N x r x in), one batched
        product; rows routed to NO_EXPERT get nothing, rows routed to FUSED the fusion."""
        x3 = x if x.dim() == 3 else x.reshape(x.shape[0], -1, x.shape[-1])
        idx = route.clamp(min=0)
        h = torch.bmm(x3, self.experts_A[idx].transpose(1, 2).to(x.dtype)) * self.expert_scaling
        special = route < 0
        if bool(special.any()):
            h = h * (~special).to(h.dtype)[:, None, None]
        delta = torch.bmm(h, self.experts_B[idx].transpose(1, 2).to(x.dtype))
        fused_rows = route == FUSED
        if bool(fused_rows.any()):
            n = len(self._router.languages)
            uniform = torch.full((n,), 1.0 / n, device=x.device)
            delta = delta + self._fused_delta(x3, uniform) * fused_rows.to(x.dtype)[:, None, None]
        return delta.reshape(*x.shape[:-1], -1)

    def _masked_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Inference on rows of mixed experts in two GEMMs over all experts' components
        (E*r columns, each row masked to its own expert's): fewer, larger operations than a
        gather per row, which matters in the decoder's one-token steps."""
        n, r = self.experts_A.shape[:2]
        rows = x.shape[0]
        x2 = x.reshape(-1, self.in_features)
        h = x2 @ self.experts_A.reshape(n * r, self.in_features).t()
        mask = self._router.row_mask(r, self.expert_scaling, h.dtype)
        h = h.view(rows, -1, n * r).mul_(mask[:, None, :]).view(-1, n * r)
        y = torch.addmm(self.bias, x2, self.weight.t()) if self.bias is not None \
            else x2 @ self.weight.t()
        y.addmm_(h, self._experts_B_cat())
        return y.view(*x.shape[:-1], self.out_features)

    def _experts_B_cat(self) -> torch.Tensor:
        """experts_B as one (E*r x out) matrix, cached while the parameter is unchanged."""
        key = (self.experts_B._version, self.experts_B.data_ptr())
        cached = getattr(self, "_b_cat", None)
        if cached is None or cached[0] != key:
            n, out, r = self.experts_B.shape
            cat = self.experts_B.detach().permute(0, 2, 1).reshape(n * r, out).contiguous()
            object.__setattr__(self, "_b_cat", (key, cat))
        return self._b_cat[1]

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"experts={len(self._router.languages)}, expert_rank={self.expert_rank}, "
                f"student={self.has_student}, merged={self.merged}")


def expert_modules(model: nn.Module) -> Dict[str, ExpertLoRALinear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, ExpertLoRALinear)}


def _route_from_text(model, args, kwargs):
    """Forward pre-hook of the ESPnet model: route each utterance by its transcript (training
    and validation); a distillation student also gets its teacher's posteriors here."""
    text = kwargs.get("text")
    router = getattr(model, "lang_router", None)  # gone once merged
    if text is None or router is None:
        return None
    router.route_tokens(text[:, 0])
    distill = getattr(model, "lang_distill", None)
    if distill is not None:
        return distill.before_forward(model, kwargs)
    return None


def inject_experts(model: nn.Module, languages: List[str], names: List[str], rank: int,
                   alpha: float, granularity: str = "module",
                   student: Optional[LoRAOptions] = None) -> ExpertRouter:
    router = ExpertRouter(languages, granularity)
    model.lang_router = router
    for name in names:
        _set_submodule(model, name, ExpertLoRALinear(model.get_submodule(name), name, router,
                                                     rank, alpha, student))
    model.register_forward_pre_hook(_route_from_text, with_kwargs=True)
    return router


def merge_with_weights(model: nn.Module, weights: Optional[Dict[str, torch.Tensor]] = None,
                       one_language: Optional[str] = None) -> int:
    """Fold the experts into plain weights: ``one_language``'s expert alone, or ``weights`` per
    group (None: the router's own, uniform unless learned)."""
    router = model.lang_router
    if one_language is not None:
        onehot = torch.zeros(len(router.languages))
        onehot[router.index(one_language)] = 1.0
        weights = {m.group: onehot for m in expert_modules(model).values()}
    if weights is not None:
        router.fusion = nn.ParameterDict({g: nn.Parameter(w.clone(), requires_grad=False)
                                          for g, w in weights.items()})
    count = merge_lora(model)
    del model.lang_router
    return count
