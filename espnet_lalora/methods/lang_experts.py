"""LoRA language experts (Li et al., Interspeech 2025, arXiv 2506.21555; routing as in
LoRA-Whisper, Song et al., Interspeech 2024): one LoRA expert per language, all trained in one
ESPnet run in which each utterance's language token routes it to its own expert, then used
routed (by the given or the detected language), fused into one set of plain weights, or
distilled into one student LoRA (``lang_distill``).

Every adapted Linear holds the experts stacked (``experts_A``: E x r x in, ``experts_B``:
E x out x r) and the model holds one :class:`ExpertRouter` (``model.lang_router``) that says which
expert each row of the current batch uses. Training sets the route from the transcript's first
token (the language token of Whisper's prompt) in a forward pre-hook of the ESPnet model, so
ESPnet's trainer, validation, resume and DDP are unchanged; an expert only gets the gradients of
its own language's rows, as if trained alone on them (docs/experts.md says where one run and
separate runs differ: Adam's moments keep moving an expert through batches without its language).

The update of row n is ``scaling * B_e A_e x_n`` with e its expert; a route of -1 means no expert
(the base model: Whisper's own language identification uses it). The same layer merges to a
plain Linear with any weights over the experts: uniform (``merge``), learned on the dev set
(``bin/export_model`` for this method), or one-hot (one merged model per language).
"""

import dataclasses
import logging
import math
from pathlib import Path
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
import yaml
from torch import nn

from espnet_lalora.config import write_config
from espnet_lalora.methods.base import AdapterConfigError, Method, MethodConfig, freeze_all_but
from espnet_lalora.methods.lora import (ALL_LINEARS, DEFAULT_RANK, LoRAOptions, candidate_modules,
                                        check_rank)
from espnet_lalora.methods.lora_layer import LoRALinear, _set_submodule, lora_modules, merge_lora
from espnet_lalora.whisper_langs import check_language

EXPERT_PARAMETERS = (".experts_A", ".experts_B")
NO_EXPERT, FUSED = -1, -2  # route values besides an expert's index: the base model, the fusion
BUNDLE_FORMAT = 1


def training_languages(args) -> List[str]:
    """The languages of ESPnet's training data: ``utt2lang`` beside its first data file."""
    first = Path(args.train_data_path_and_name_and_type[0][0])
    utt2lang = first.parent / "utt2lang"
    if not utt2lang.is_file():
        raise AdapterConfigError(
            f"lang_experts: {utt2lang} not found, so the experts' languages are unknown; list "
            "them as adapter_conf.languages (e.g. [ja, ko]) or give the data dir a utt2lang")
    langs = sorted({line.split()[1] for line in utt2lang.read_text(encoding="utf-8")
                    .splitlines() if len(line.split()) >= 2})
    if not langs:
        raise AdapterConfigError(f"lang_experts: {utt2lang} is empty")
    return langs


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
        self.route: Optional[torch.Tensor] = None
        self.fusion: Optional[nn.ParameterDict] = None

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
        if router.mode == "fused":
            lora_A, lora_B = self.expert_factors(router.weights(self.group, x.device))
            h = F.linear(x, lora_A.to(x.dtype)) * self.scaling
            return self._base(x) + F.linear(h, lora_B.to(x.dtype))
        route = router.route
        if route is None or route.shape[0] != x.shape[0]:
            raise RuntimeError(
                f"lang_experts: the batch has {x.shape[0]} rows but the route "
                f"{'is not set' if route is None else f'has {route.shape[0]}'}; set it with "
                "model.lang_router.route_languages([...]) (training sets it from the transcript)")
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


@dataclasses.dataclass
class LangExpertsConfig(LoRAOptions, MethodConfig):
    languages: Optional[List[str]] = None  # None: those of the training data's utt2lang
    target_modules: Optional[List[str]] = None  # None: every Linear of every block (raw LoRA)
    fusion_granularity: str = "module"  # learned fusion weights per module | layer | model
    fusion_epochs: int = 3  # passes over the dev set that learn the fusion weights (stage 9)
    fusion_lr: float = 0.02

    def validate(self, method: str) -> None:
        super().validate(method)
        if self.languages is not None:
            if not self.languages:
                raise AdapterConfigError(f"adapter_conf.languages is empty for {method!r}: "
                                         "list the languages (e.g. [ja, ko]) or drop the key")
            if len(set(self.languages)) != len(self.languages):
                raise AdapterConfigError(f"adapter_conf.languages = {self.languages}: a "
                                         "language is listed twice")
            for lang in self.languages:
                try:
                    check_language(lang, "adapter_conf.languages")
                except ValueError as e:
                    raise AdapterConfigError(str(e)) from None
        if self.fusion_granularity not in ("module", "layer", "model"):
            raise AdapterConfigError(
                f"adapter_conf.fusion_granularity = {self.fusion_granularity!r}: use module, "
                "layer or model")
        if self.fusion_epochs < 0 or self.fusion_lr <= 0:
            raise AdapterConfigError("adapter_conf.fusion_epochs must be >= 0 and fusion_lr > 0")


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


class LangExpertsMethod(Method):
    name = "lang_experts"
    description = "one LoRA expert per language, routed by the utterance's language; fused or routed"
    config_class = LangExpertsConfig

    def inject(self, model: nn.Module, config: LangExpertsConfig) -> None:
        if not config.languages:
            raise AdapterConfigError(
                "lang_experts: adapter_conf.languages is not set; the recipe driver fills it from "
                "the training data's utt2lang, or list them in the config (e.g. [ja, ko])")
        rank = config.rank or DEFAULT_RANK
        check_rank(rank, self.name)
        names = candidate_modules(model, list(config.target_modules or ALL_LINEARS))
        inject_experts(model, config.languages, names, rank, float(config.alpha or rank),
                       config.fusion_granularity)
        freeze_all_but(model, self.adapter_parameter)
        logging.info(f"[espnet_lalora] {self.name}: {len(config.languages)} experts "
                     f"({', '.join(config.languages)}) of rank {rank} on {len(names)} Linear layers")

    def merge(self, model: nn.Module) -> int:
        """The experts fused with the router's weights (uniform unless learned)."""
        return merge_with_weights(model)

    def adapter_parameter(self, name: str) -> bool:
        return name.endswith(EXPERT_PARAMETERS)

    def adapted_modules(self, model: nn.Module):
        return {n: m.expert_rank for n, m in expert_modules(model).items()}

    def plots(self, exp_dir: Path) -> List[Path]:
        return [p for p in (exp_dir / "export" / "expert_similarity.png",
                            exp_dir / "export" / "fusion_weights.png") if p.is_file()]

    def export_more(self, model, args, config, method_config, out, save, log):
        from espnet_lalora.methods.lang_experts_export import export_experts

        return export_experts(model, args, config, method_config, out, save, log)

    def decode_modes(self, exp_dir, config):
        from espnet_lalora.methods.lang_experts_export import decode_modes

        return decode_modes(exp_dir, config)


# ---- merging with chosen weights, and the adapter bundle


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


@dataclasses.dataclass
class LangDistillConfig(LoRAOptions, MethodConfig):
    teacher: str = ""  # an expert bundle folder (export/experts of a lang_experts run)
    kd_weight: float = 1.0  # loss = CE + kd_weight * T^2 * KL(teacher || student)
    temperature: float = 2.0
    language_token: bool = True  # False: the student's prompt has no language token

    def validate(self, method: str) -> None:
        super().validate(method)
        if not self.teacher:
            raise AdapterConfigError(f"adapter_conf.teacher is not set for {method!r}: give the "
                                     "expert bundle of a lang_experts run (its export/experts)")
        if self.kd_weight < 0 or self.temperature <= 0:
            raise AdapterConfigError("adapter_conf.kd_weight must be >= 0 and temperature > 0")


class Distillation:
    """The teacher's token posteriors for the batch (no gradient), and the KL term added to
    ESPnet's attention loss. The teacher is the same network with the experts routed."""

    def __init__(self, config: LangDistillConfig):
        self.kd_weight, self.temperature = config.kd_weight, config.temperature
        self.drop_language = not config.language_token
        self.teacher_logits = None
        self.last_kd = None

    def before_forward(self, model, kwargs):
        text, text_lengths = kwargs["text"], kwargs["text_lengths"]
        from espnet.nets.pytorch_backend.transformer.add_sos_eos import add_sos_eos

        router = model.lang_router
        if model.training and self.kd_weight > 0:
            router.mode = "route"  # the teacher: each utterance's own expert
            with torch.no_grad():
                enc, enc_lens = model.encode(kwargs["speech"], kwargs["speech_lengths"])
                ys_in, _ = add_sos_eos(text, model.sos, model.eos, model.ignore_id)
                logits, _ = model.decoder(enc, enc_lens, ys_in, text_lengths + 1)
            # without the language token the student's position t is the teacher's t + 1
            self.teacher_logits = logits[:, 1:] if self.drop_language else logits
        router.mode = "student"
        if self.drop_language:
            kwargs = dict(kwargs, text=text[:, 1:], text_lengths=text_lengths - 1)
            return (), kwargs
        return None

    def after_criterion(self, criterion, inputs, loss):
        teacher, self.teacher_logits = self.teacher_logits, None
        if teacher is None or not criterion.training:
            return loss
        student, target = inputs[0], inputs[1]
        mask = target != criterion.padding_idx
        t = self.temperature
        log_p_s = F.log_softmax(student.float() / t, dim=-1)
        p_t = F.softmax(teacher.float() / t, dim=-1)
        kl = (p_t * (torch.log(p_t.clamp_min(1e-20)) - log_p_s)).sum(-1)
        kl = kl.masked_fill(~mask, 0.0).sum()
        denom = mask.sum() if criterion.normalize_length else target.shape[0]
        kd = kl / denom * t * t
        self.last_kd = kd.detach()
        return loss + self.kd_weight * kd


def _add_kd_to_criterion(criterion, inputs, loss):
    return criterion._distill.after_criterion(criterion, inputs, loss)


def _report_kd(model, inputs, output):
    """The KL term in ESPnet's training log (``kd``), next to the loss it is part of."""
    distill = getattr(model, "lang_distill", None)
    if distill is None or distill.last_kd is None or not model.training:
        return output
    kd, distill.last_kd = distill.last_kd.reshape(1), None
    if isinstance(output, dict):
        return dict(output, stats=dict(output["stats"], kd=kd))
    loss, stats, weight = output
    return loss, dict(stats, kd=kd), weight


class LangDistillMethod(Method):
    name = "lang_distill"
    description = "one LoRA student trained on all languages with a KL term to the language experts"
    config_class = LangDistillConfig

    def inject(self, model: nn.Module, config: LangDistillConfig) -> None:
        teacher = Path(config.teacher)
        try:
            meta = read_bundle(teacher)
        except ValueError as e:
            raise AdapterConfigError(f"adapter_conf.teacher: {e}") from None
        names = [n for n in meta["modules"]]
        try:
            router = inject_experts(model, meta["languages"], names, meta["rank"],
                                    float(meta["alpha"]), student=config)
            load_bundle_into(model, teacher)
        except (AttributeError, ValueError, RuntimeError) as e:
            raise AdapterConfigError(f"adapter_conf.teacher {teacher}: {e}") from None
        router.mode = "student"
        model.lang_distill = Distillation(config)
        object.__setattr__(model.criterion_att, "_distill", model.lang_distill)
        model.criterion_att.register_forward_hook(_add_kd_to_criterion)
        model.register_forward_hook(_report_kd)
        freeze_all_but(model, lambda n: n.endswith((".lora_A", ".lora_B")))
        logging.info(f"[espnet_lalora] {self.name}: student LoRA rank {config.rank or DEFAULT_RANK} "
                     f"on {len(names)} Linear layers, taught by {len(meta['languages'])} experts "
                     f"({', '.join(meta['languages'])}); kd_weight {config.kd_weight}, T "
                     f"{config.temperature}, language token {config.language_token}")

    def merge(self, model: nn.Module) -> int:
        """The student alone; the teacher's experts are dropped."""
        count = merge_with_weights(model)
        del model.lang_distill
        return count

    def adapter_parameter(self, name: str) -> bool:
        return name.endswith((".lora_A", ".lora_B") + EXPERT_PARAMETERS)

    def adapted_modules(self, model: nn.Module):
        return {n: m.rank for n, m in lora_modules(model).items()}

    def decode_modes(self, exp_dir, config):
        modes = super().decode_modes(exp_dir, config)
        if (config.get("adapter_conf") or {}).get("language_token", True):
            return modes
        return [(suffix, c, m, f"{extra} --language_token false".strip())
                for suffix, c, m, extra in modes]


METHODS = [LangExpertsMethod(), LangDistillMethod()]
