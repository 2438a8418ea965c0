"""The layer of LoRA language experts, its router and its bundle: E LoRA experts of one rank per
adapted Linear, stacked (``experts_A``: E x r x in, ``experts_B``: E x out x r), and one
:class:`ExpertRouter` per model (``model.lang_router``) that says which expert each row of the
batch uses. Row n gets ``scaling * B_e A_e x_n``, e its expert (multi-LoRA serving: gathered per
row, one batched product); a route of ``NO_EXPERT`` is the base model, ``FUSED`` the uniform
fusion. The same layer merges to a plain Linear with any weights over the experts (uniform,
learned, one-hot: one model per language). Training routes by the transcript's language token
(:func:`inject_experts` registers the forward pre-hook). Methods: :mod:`.lang_experts`.
"""

import math
from pathlib import Path
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
import yaml
from torch import nn

from espnet_lalora.config import write_config
from espnet_lalora.methods.lora import DEFAULT_RANK, LoRAOptions
from espnet_lalora.methods.lora_layer import (LoRALinear, _autocast_enabled, _LoRALinearFunction,
                                              _set_submodule, merge_lora)

EXPERT_PARAMETERS = (".experts_A", ".experts_B")
NO_EXPERT, FUSED = -1, -2  # route values besides an expert's index: the base model, the fusion
BUNDLE_FORMAT = 1



def language_token_ids(languages: List[str]) -> List[int]:
    import whisper.tokenizer

    tokenizer = whisper.tokenizer.get_tokenizer(True).tokenizer
    return [tokenizer.convert_tokens_to_ids(f"<|{lang}|>") for lang in languages]


class ExpertRouter(nn.Module):
    """Which expert each row of the batch uses (``route``: LongTensor, -1 = none), or which
    weights over the experts every row uses (``mode = "fused"``: ``fusion`` per module group,
    None = uniform). ``mode = "student"``: the distillation student's own LoRA."""

    def __init__(self, languages: List[str], granularity: str = "module"):
        super().__init__()
        self.languages = list(languages)
        self.granularity = granularity
        self.register_buffer("lang_tokens", torch.tensor(language_token_ids(self.languages)),
                             persistent=False)
        self.mode = "route"
        self.route = None
        self.fusion: Optional[nn.ParameterDict] = None

    @property
    def route(self) -> Optional[torch.Tensor]:
        return self._route

    @route.setter
    def route(self, value: Optional[torch.Tensor]):
        # Derived once per batch (not in each of the 96 layers): whether one expert serves the
        # whole batch, and the per-row masks of the batched inference path.
        self._route, self.single, self._masks = value, None, {}
        if value is not None and value.numel():
            first = int(value[0])
            if first >= 0 and bool((value == first).all()):
                self.single = first

    def row_mask(self, rank: int, scaling: float, dtype) -> torch.Tensor:
        """(N, E*rank): row n's weight on each expert's rank-1 components, times ``scaling``:
        one-hot for its expert, 1/E for the fusion (FUSED), zero for the base (NO_EXPERT)."""
        key = (rank, scaling, dtype)
        if key not in self._masks:
            route, n = self._route, len(self.languages)
            weights = F.one_hot(route.clamp(min=0), n).to(dtype) * (route >= 0)[:, None]
            weights[route == FUSED] = 1.0 / n
            self._masks[key] = (weights * scaling).repeat_interleave(rank, dim=1)
        return self._masks[key]

    def index(self, lang: str, what: str = "language") -> int:
        if lang not in self.languages:
            raise KeyError(f"{what} {lang!r} has no expert; the experts are "
                           f"{', '.join(self.languages)}")
        return self.languages.index(lang)

    def route_languages(self, langs: List[Optional[str]]):
        """Route row n to the expert of ``langs[n]`` (None: no expert, the base model)."""
        self.mode = "route"
        self.route = torch.tensor([NO_EXPERT if lang is None else self.index(lang)
                                   for lang in langs], device=self.lang_tokens.device)

    def route_tokens(self, first_tokens: torch.Tensor):
        """Route each row by its transcript's first token, which must be a language token of an
        expert (stage 4 writes ``<|lang|>`` first in ``text_whisper``)."""
        match = first_tokens[:, None] == self.lang_tokens[None, :]
        if not bool(match.any(1).all()):
            import whisper.tokenizer

            bad = int(first_tokens[~match.any(1)][0])
            token = whisper.tokenizer.get_tokenizer(True).decode_with_timestamps([bad])
            raise RuntimeError(
                f"lang_experts: an utterance starts with token {bad} ({token!r}), which is not the "
                f"language token of an expert ({', '.join(self.languages)}): add its language to "
                "adapter_conf.languages, or check the training data's utt2lang and text_whisper")
        self.route = match.float().argmax(1)

    def group_of(self, module_name: str) -> str:
        """The fusion weight group of a module: itself, its block (layer) or the whole model."""
        if self.granularity == "module":
            return module_name.replace(".", "_")
        if self.granularity == "layer":
            return module_name.split(".attn.")[0].split(".cross_attn.")[0].split(".mlp.")[0] \
                .replace(".", "_")
        return "all"

    def weights(self, group: str, device) -> torch.Tensor:
        if self.fusion is not None:
            return self.fusion[group]
        return torch.full((len(self.languages),), 1.0 / len(self.languages), device=device)


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
            return super().forward(x)
        route = router.route
        if router.mode == "fused" or route is None:  # no route: what the model merges to
            lora_A, lora_B = self.expert_factors(router.weights(self.group, x.device))
            h = F.linear(x, lora_A.to(x.dtype)) * self.scaling
            return self._base(x) + F.linear(h, lora_B.to(x.dtype))
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
        if fast and not torch.is_grad_enabled():  # decoding a mixed batch
            return self._masked_forward(x)
        # Multi-LoRA serving: each row's own expert, gathered (N x r x in), one batched product.
        x3 = x if x.dim() == 3 else x.reshape(x.shape[0], -1, x.shape[-1])
        idx = route.clamp(min=0)
        h = torch.bmm(x3, self.experts_A[idx].transpose(1, 2).to(x.dtype))
        h = h * self.expert_scaling
        special = route < 0
        if bool(special.any()):  # rows without an expert: the base model, or the fusion
            h = h * (~special).to(h.dtype)[:, None, None]
        delta = torch.bmm(h, self.experts_B[idx].transpose(1, 2).to(x.dtype))
        fused_rows = route == FUSED
        if bool(fused_rows.any()):
            uniform = torch.full((len(router.languages),), 1.0 / len(router.languages),
                                 device=x.device)
            lora_A, lora_B = self.expert_factors(uniform)
            fused = F.linear(F.linear(x3, lora_A.to(x.dtype)) * self.scaling, lora_B.to(x.dtype))
            delta = delta + fused * fused_rows.to(x.dtype)[:, None, None]
        return self._base(x) + delta.reshape(*x.shape[:-1], -1)

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


def base_fingerprint(model: nn.Module) -> List[float]:
    """A few numbers that tell Whisper checkpoints apart (same shapes, other weights)."""
    decoder = model.decoder.decoders
    emb = decoder.token_embedding.weight.detach().float()
    return [round(float(emb[:64].sum()), 4), round(float(emb[:64].abs().sum()), 4),
            len(decoder.blocks), int(emb.shape[1])]


def save_bundle(model: nn.Module, config: dict, out: Path, save):
    """``out/experts.pth`` (the experts' tensors by parameter name) and ``out/experts.yaml``
    (languages, rank, alpha, modules, base model), plus the training config to rebuild the
    model: docs/experts.md documents the format."""
    router = model.lang_router
    modules = expert_modules(model)
    any_module = next(iter(modules.values()))
    state = {f"{n}.{p}": getattr(m, p).detach().clone() for n, m in modules.items()
             for p in ("experts_A", "experts_B")}
    save(state, out / "experts.pth")
    meta = {"format": BUNDLE_FORMAT, "languages": router.languages,
            "rank": any_module.expert_rank,
            "alpha": any_module.expert_scaling * any_module.expert_rank,
            "modules": sorted(modules), "base": config["encoder_conf"].get("whisper_model"),
            "base_fingerprint": base_fingerprint(model)}
    write_config(meta, out / "experts.yaml")
    conf = dict(config, adapter="lang_experts",
                adapter_conf=dict(config.get("adapter_conf") or {}, languages=router.languages))
    write_config(conf, out / "config.yaml")
    return meta


def read_bundle(path: Path) -> dict:
    """experts.yaml of a bundle folder, checked; raises ValueError naming the file."""
    meta_path = Path(path) / "experts.yaml"
    if not meta_path.is_file() or not (Path(path) / "experts.pth").is_file():
        raise ValueError(f"{path}: not an expert bundle (experts.yaml and experts.pth; stage 9 "
                         "of a lang_experts run writes one in export/experts/)")
    meta = yaml.safe_load(meta_path.read_text(encoding="utf-8"))
    if meta.get("format") != BUNDLE_FORMAT:
        raise ValueError(f"{meta_path}: bundle format {meta.get('format')}, expected "
                         f"{BUNDLE_FORMAT}")
    return meta


def load_bundle_into(model: nn.Module, path: Path) -> dict:
    """Load a bundle's experts into a model built with the same experts (its config.yaml)."""
    meta = read_bundle(path)
    if base_fingerprint(model) != meta["base_fingerprint"]:
        raise ValueError(f"{path}: the experts were trained on another base model "
                         f"({meta['base']}, fingerprint {meta['base_fingerprint']}) than this one "
                         f"(fingerprint {base_fingerprint(model)})")
    state = torch.load(Path(path) / "experts.pth", map_location="cpu", weights_only=True)
    expected = {n for n in model.state_dict() if n.endswith(EXPERT_PARAMETERS)}
    if set(state) != expected:
        raise ValueError(f"{path}: its experts ({len(state)} tensors) do not fit this model's "
                         f"({len(expected)}): e.g. {sorted(set(state) ^ expected)[:2]}")
    model.load_state_dict(state, strict=False)
    return meta


def combine_bundles(paths: List[Path]) -> tuple:
    """One bundle from several (e.g. a language added later by a separate run): same base, rank,
    alpha and modules, no language twice. Returns (meta, state)."""
    metas = [read_bundle(p) for p in paths]
    first = metas[0]
    for p, meta in zip(paths[1:], metas[1:]):
        for key in ("base", "base_fingerprint", "rank", "alpha", "modules"):
            if meta[key] != first[key]:
                shown = (meta[key], first[key]) if key != "modules" else (
                    f"{len(meta[key])} modules", f"{len(first[key])} modules")
                raise ValueError(f"{p}: {key} {shown[0]} differs from {paths[0]}'s {shown[1]}; "
                                 "experts combine only when trained on the same base model with "
                                 "the same rank, alpha and modules")
    languages = [lang for m in metas for lang in m["languages"]]
    twice = sorted({lang for lang in languages if languages.count(lang) > 1})
    if twice:
        raise ValueError(f"language(s) {twice} have an expert in more than one of {paths}")
    states = [torch.load(Path(p) / "experts.pth", map_location="cpu", weights_only=True)
              for p in paths]
    state = {k: torch.cat([s[k] for s in states]) for k in states[0]}
    return dict(first, languages=languages), state


# ---- distillation: one student LoRA, taught by the experts
