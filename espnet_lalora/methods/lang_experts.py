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
from pathlib import Path
from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from espnet_lalora.methods import lang_experts_export
from espnet_lalora.methods.base import AdapterConfigError, Method, MethodConfig, freeze_all_but
from espnet_lalora.methods.expert_bundle import load_bundle_into, read_bundle
from espnet_lalora.methods.expert_layer import (EXPERT_PARAMETERS, expert_modules,
                                                inject_experts, merge_with_weights)
from espnet_lalora.methods.lora import (ALL_LINEARS, DEFAULT_RANK, LoRAOptions, candidate_modules,
                                        check_rank)
from espnet_lalora.methods.lora_layer import lora_modules
from espnet_lalora.whisper_langs import check_language

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
        return lang_experts_export.export_experts(model, args, config, method_config, out, save,
                                                  log)

    def decode_modes(self, exp_dir, config):
        return lang_experts_export.decode_modes(exp_dir, config)

    def count_note(self, config):
        if config.languages:
            return None
        return (f"one raw LoRA of rank {config.rank or DEFAULT_RANK} per language of the "
                "training data's utt2lang")

    def complete_config(self, args) -> None:
        if not (args.adapter_conf or {}).get("languages") and \
                getattr(args, "train_data_path_and_name_and_type", None):
            args.adapter_conf = dict(args.adapter_conf or {}, languages=training_languages(args))


# ---- merging with chosen weights, and the adapter bundle


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

    def train_inputs(self, config):
        return [Path(config.teacher)]

    def count_note(self, config):
        try:
            read_bundle(Path(config.teacher))
            return None
        except ValueError:
            return (f"a raw-LoRA student of rank {config.rank or DEFAULT_RANK} on the modules "
                    f"of its teacher, {config.teacher} (not trained yet)")

    def adapted_modules(self, model: nn.Module):
        return {n: m.rank for n, m in lora_modules(model).items()}

    def decode_modes(self, exp_dir, config):
        modes = super().decode_modes(exp_dir, config)
        if (config.get("adapter_conf") or {}).get("language_token", True):
            return modes
        return [(suffix, c, m, f"{extra} --language_token false".strip())
                for suffix, c, m, extra in modes]


METHODS = [LangExpertsMethod(), LangDistillMethod()]
