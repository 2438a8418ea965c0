"""What a method is: a config schema (the ``adapter_conf`` keys, with defaults, validated once)
and a few hooks that the driver, the exports, the parameter report and ESPnet's trainer call.

A method module defines a config dataclass and a :class:`Method` subclass and lists its
instances in ``METHODS``; :mod:`espnet_lalora.methods` collects them into the one registry.
"""

import dataclasses
import logging
import typing
from pathlib import Path
from typing import Any, Dict, List, Optional

from torch import nn


class AdapterConfigError(ValueError):
    """A bad ``adapter``/``adapter_conf``; the message names the key and what to do."""


@dataclasses.dataclass
class MethodConfig:
    """No options. Subclasses add fields (with defaults) and check them in ``validate``."""

    def validate(self, method: str) -> None:
        pass


def _type_ok(value, annotation) -> bool:
    origin = typing.get_origin(annotation)
    if origin is typing.Union:  # Optional[X]
        return any(_type_ok(value, a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if origin in (list, List):
        (item,) = typing.get_args(annotation) or (Any,)
        return isinstance(value, list) and all(_type_ok(v, item) for v in value)
    if annotation is Any:
        return True
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, annotation)


def _type_name(annotation) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


class Method:
    """One fine-tuning method. Subclasses set ``name``, ``description``, ``config_class`` and
    override ``inject``; the other hooks have defaults that suit a method without them."""

    name: str = ""
    description: str = ""
    config_class = MethodConfig
    # Stage 7: a method that prepares something before training (LA-LoRA's module selection)
    # names the file it writes in the experiment dir and the adapter_conf key that stage 8
    # hands it to. None: no stage 7.
    prepare_output: Optional[str] = None
    prepare_conf_key: Optional[str] = None

    # ---- config
    def parse_config(self, conf: Optional[dict]) -> MethodConfig:
        """``adapter_conf`` as this method's config object; unknown keys, wrong types and bad
        values are refused with the key named."""
        conf = dict(conf or {})
        fields = {f.name: f for f in dataclasses.fields(self.config_class)}
        unknown = sorted(set(conf) - set(fields))
        if unknown:
            raise AdapterConfigError(f"adapter_conf has unknown key(s) {unknown} for "
                                     f"{self.name!r}; accepted: {sorted(fields) or 'none'}")
        hints = typing.get_type_hints(self.config_class)
        for key, value in conf.items():
            if not _type_ok(value, hints[key]):
                raise AdapterConfigError(
                    f"adapter_conf.{key} = {value!r} for adapter {self.name!r}: expected "
                    f"{_type_name(hints[key])}")
        config = self.config_class(**conf)
        config.validate(self.name)
        return config

    # ---- hooks
    def inject(self, model: nn.Module, config: MethodConfig) -> None:
        """Put the method into an ESPnet Whisper model and freeze everything it does not train."""
        raise NotImplementedError

    def merge(self, model: nn.Module) -> int:
        """Fold what was trained into plain weights; return how many modules were merged
        (0: the model is already plain, e.g. BitFit)."""
        return 0

    def adapter_parameter(self, name: str) -> bool:
        """Whether a parameter was added by the method (not a parameter of the base model)."""
        return False

    def adapted_modules(self, model: nn.Module) -> Dict[str, Optional[int]]:
        """{module name: rank (None where a rank makes no sense)} of what the method adapts."""
        return {}

    def prepare(self, args, argv: List[str], out: Path) -> None:
        """Stage 7 (only where ``prepare_output`` is set). ``args``: asr_train's parsed options
        (the model, data and batches of stage 8); ``argv``: this method's own stage-7 options
        (``--help`` lists them). Writes ``out``."""
        raise NotImplementedError(f"{self.name} has no stage 7")

    def check_prepared(self, path: Path, args) -> str:
        """Check a stage-7 output made elsewhere against the model of ``args``; a summary."""
        raise NotImplementedError(f"{self.name} has no stage 7")

    def prepare_note(self, config: MethodConfig) -> str:
        """What is known of the trainable count before stage 7 has run (parameter report)."""
        return "chosen by stage 7"

    def count_note(self, config: MethodConfig) -> Optional[str]:
        """Why the trainable count cannot be known from the config alone (the parameter report
        then prints this instead), or None."""
        return None

    def train_inputs(self, config: MethodConfig) -> List[Path]:
        """Files or folders that training reads besides the data and the config (language
        distillation: its teacher's expert bundle). Stage 8's fingerprint covers them, so that a
        changed teacher trains the student again."""
        return []

    def complete_config(self, args) -> None:
        """Fill in ``args.adapter_conf`` what the training data tells (language experts: the
        languages) before ESPnet builds the model and writes its config.yaml."""

    def optimizer_step_hook(self, model: nn.Module, args):
        """A function ``hook(optimizer)`` to call after every optimizer step that really happened
        (gradients still present; skipped non-finite steps never reach it), or None. ``args``:
        asr_train's options (epochs, batches: :func:`stage8.optimizer_steps`)."""
        return None

    def loss_term(self, model: nn.Module):
        """A function returning a scalar tensor that training adds to ESPnet's loss (a
        regularizer; reported as ``<method>_reg`` in the training log), or None."""
        return None

    def rank_pattern(self, model: nn.Module) -> Optional[Dict[str, dict]]:
        """What a method with learned ranks learned, per adapted module: ``{"rank": kept rank,
        "of": rank available, "l1": L1 norm of its coefficients}``. Stage 9 writes it as
        ``export/rank_pattern.{json,png}``. None: the method has no learned ranks."""
        return None

    def export_more(self, model: nn.Module, args, config: dict, method_config: MethodConfig,
                    out: Path, save, log) -> dict:
        """Stage 9 exports beyond the merged model (language experts: the expert bundle, one
        model per language, the learned fusion); returns entries for ``params.yaml``."""
        return {}

    def decode_modes(self, exp_dir: Path, config: dict) -> List[tuple]:
        """What stage 10 decodes of a trained experiment: ``(decode dir suffix, config, model
        file, extra decoder options)``; by default the merged export, the language given."""
        merged = exp_dir / "export" / "merged"
        return [("", merged / "config.yaml", merged / "model.pth", "")]

    def plots(self, exp_dir: Path) -> List[Path]:
        """Figures of this method in an experiment dir, for the report (may be empty)."""
        png = exp_dir / "export" / "rank_pattern.png"
        return [png] if png.is_file() else []

    # ---- ESPnet's adapter table calls this: create_adapter_fn(model=model, **adapter_conf)
    def create_adapter(self, model: nn.Module, **conf) -> nn.Module:
        self.inject(model, self.parse_config(conf))
        log_trainable(model, self.name)
        return model


def freeze_all_but(model: nn.Module, is_trainable) -> int:
    """Freeze every parameter for which ``is_trainable(name)`` is false; return the trainable
    count. PEFT freezes the base model; ESPnet's own LoRA did not (espnet #5734)."""
    trainable = 0
    for name, param in model.named_parameters():
        param.requires_grad = bool(is_trainable(name))
        trainable += param.numel() if param.requires_grad else 0
    return trainable


def count_parameters(model: nn.Module):
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total


def log_trainable(model: nn.Module, method: str):
    trainable, total = count_parameters(model)
    logging.info(f"[espnet_lalora] {method}: trainable parameters {trainable:,} of {total:,} "
                 f"({100.0 * trainable / total:.4f}%)")
