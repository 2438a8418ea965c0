"""AdaLoRA (Zhang et al., ICLR 2023), a baseline of the S2-LoRA paper: LoRA in SVD form
(delta W = B diag(E) A) whose rank budget is reallocated during training by importance.

PEFT's own implementation is used as it is (its ``SVDLinear`` layer, ``RankAllocator`` and
``AdaLoraModel.update_and_allocate``), put into ESPnet's Whisper model. What HF's training loop
does for it is done here for ESPnet's trainer:

- ``update_and_allocate`` runs once per optimizer step that happened (the plugin's step hook:
  after the step, gradients still present; ESPnet skips the step, and so the hook, when gradients
  are not finite). The step index is a buffer of the model (``adalora_step``), so it is saved in
  every checkpoint and a resumed run continues the budget schedule where it stopped.
- ``total_step`` (epochs x batches per epoch / accum_grad) is computed from the ESPnet config and
  the training data when training starts; ``tinit`` and ``tfinal`` are given as shares of it.
- The orthogonality regularizer of PEFT's ``AdaLoraModel.forward`` (which expects a Hugging Face
  output) is added to ESPnet's loss by the plugin (``loss_term``).

On resume, the importance averages (PEFT keeps them in memory only) start again from zero; the
rank pattern of the final phase is read back from the zero singular values of the checkpoint.
"""

import dataclasses
import logging
import re
from typing import List, Optional

import torch
from torch import nn

from espnet_lalora.methods.base import AdapterConfigError, Method, MethodConfig, freeze_all_but
from espnet_lalora.methods.lora import ALL_LINEARS, candidate_modules
from espnet_lalora.methods.lora_layer import _set_submodule

ADAPTER = "default"  # PEFT's adapter name
STEP = "adalora_step"  # the model buffer that counts optimizer steps
_PARAM = re.compile(r"\.(lora_[ABE]|ranknum)\.default$")


@dataclasses.dataclass
class AdaLoRAConfig(MethodConfig):
    init_r: int = 12  # rank of every module at the start
    target_r: int = 8  # average rank at the end (total budget target_r x modules)
    alpha: Optional[float] = None  # PEFT's lora_alpha (scaling alpha / rank); None: init_r
    dropout_rate: float = 0.0
    target_modules: Optional[List[str]] = None  # None: every Linear of every block
    tinit_share: float = 0.1  # share of the steps before the budget starts to fall
    # Share of the steps at the final budget, the pattern fixed: 0.3 puts the last two epochs
    # of a 4-epoch run in it, so ESPnet's average of the 2 best epochs keeps the pattern.
    tfinal_share: float = 0.3
    deltaT: int = 10  # steps between reallocations
    beta1: float = 0.85  # importance smoothing (PEFT's defaults)
    beta2: float = 0.85
    orth_reg_weight: float = 0.5
    total_step: Optional[int] = None  # None: from the ESPnet config and the training data

    def validate(self, method: str) -> None:
        for key in ("init_r", "target_r"):
            if getattr(self, key) < 1:
                raise AdapterConfigError(f"adapter_conf.{key} = {getattr(self, key)} for adapter "
                                         f"{method!r}: must be an integer >= 1 (e.g. 12 and 8)")
        if self.target_r > self.init_r:
            raise AdapterConfigError(
                f"adapter_conf.target_r = {self.target_r} is above init_r = {self.init_r} for "
                f"adapter {method!r}: AdaLoRA only prunes ranks; set target_r <= init_r")
        if not 0.0 <= self.dropout_rate < 1.0:
            raise AdapterConfigError(f"adapter_conf.dropout_rate = {self.dropout_rate}: must "
                                     "be in [0, 1)")
        for key in ("tinit_share", "tfinal_share"):
            if not 0.0 <= getattr(self, key) < 1.0:
                raise AdapterConfigError(f"adapter_conf.{key} = {getattr(self, key)}: a share "
                                         "of the training steps, in [0, 1)")
        if self.tinit_share + self.tfinal_share >= 1.0:
            raise AdapterConfigError(
                f"adapter_conf.tinit_share + tfinal_share = "
                f"{self.tinit_share + self.tfinal_share}: leaves no steps to reallocate ranks; "
                "keep the sum below 1 (defaults 0.1 + 0.3)")
        if self.deltaT < 1:
            raise AdapterConfigError(f"adapter_conf.deltaT = {self.deltaT}: must be >= 1")
        for key in ("beta1", "beta2"):
            if not 0.0 < getattr(self, key) < 1.0:
                raise AdapterConfigError(f"adapter_conf.{key} = {getattr(self, key)}: must be "
                                         "in (0, 1)")
        if self.orth_reg_weight < 0:
            raise AdapterConfigError(f"adapter_conf.orth_reg_weight = {self.orth_reg_weight}: "
                                     "must be >= 0")
        if self.total_step is not None and self.total_step < 1:
            raise AdapterConfigError(f"adapter_conf.total_step = {self.total_step}: must be "
                                     ">= 1, or leave it out (computed from the config)")


def schedule(config: AdaLoRAConfig, total_step: int):
    """(tinit, tfinal) in steps; a run too short for a reallocation phase is refused."""
    tinit = int(round(config.tinit_share * total_step))
    # At least one final step: the step that forces the final budget (else ranks never fall).
    tfinal = max(1, int(round(config.tfinal_share * total_step)))
    if tinit >= total_step - tfinal:
        raise AdapterConfigError(
            f"adalora: the run has {total_step} optimizer steps, too few to reallocate ranks "
            f"(tinit {tinit}, tfinal {tfinal}); train longer (max_epoch, batch size) or give "
            "adapter_conf.total_step")
    return tinit, tfinal


def svd_modules(model: nn.Module):
    from peft.tuners.adalora.layer import SVDLinear

    return {n: m for n, m in model.named_modules() if isinstance(m, SVDLinear)}


class AdaLoRAMethod(Method):
    name = "adalora"
    description = "LoRA in SVD form, ranks reallocated by importance during training (PEFT)"
    config_class = AdaLoRAConfig

    def inject(self, model: nn.Module, config: AdaLoRAConfig) -> None:
        from peft import AdaLoraConfig
        from peft.tuners.adalora import AdaLoraModel

        names = candidate_modules(model, list(config.target_modules or ALL_LINEARS))
        # total_step is known once the training data is (optimizer_step_hook); until then a
        # placeholder that PEFT accepts.
        total = config.total_step or 10_000
        tinit, tfinal = schedule(config, total)
        peft_config = AdaLoraConfig(
            init_r=config.init_r, target_r=config.target_r,
            lora_alpha=config.alpha if config.alpha is not None else config.init_r,
            lora_dropout=config.dropout_rate, target_modules=names, tinit=tinit, tfinal=tfinal,
            deltaT=config.deltaT, beta1=config.beta1, beta2=config.beta2,
            orth_reg_weight=config.orth_reg_weight, total_step=total)
        tuner = AdaLoraModel(model, peft_config, ADAPTER)
        # Not a submodule (the tuner holds the model): a plain attribute, out of state_dict.
        object.__setattr__(model, "_adalora_tuner", tuner)
        weight = model.get_submodule(names[0]).get_base_layer().weight
        model.register_buffer(STEP, torch.zeros((), dtype=torch.long, device=weight.device))
        freeze_all_but(model, self.adapter_parameter)
        for module in svd_modules(model).values():
            module.ranknum[ADAPTER].requires_grad = False
        logging.info(f"[espnet_lalora] adalora: init_r {config.init_r} -> target_r "
                     f"{config.target_r} on {len(names)} Linear layers")

    def optimizer_step_hook(self, model: nn.Module, args):
        from espnet_lalora.methods.stage8 import optimizer_steps

        config = self.parse_config(args.adapter_conf)
        tuner = model._adalora_tuner
        peft_config = tuner.peft_config[ADAPTER]
        total = config.total_step or optimizer_steps(args)
        peft_config.tinit, peft_config.tfinal = schedule(config, total)
        peft_config.total_step = total
        allocator = tuner.rankallocator
        logging.info(f"[espnet_lalora] adalora: {total} optimizer steps; budget "
                     f"{allocator.init_bgt} ranks until step {peft_config.tinit}, cubic down to "
                     f"{allocator.target_bgt} at step {total - peft_config.tfinal}, then fixed")
        counter = getattr(model, STEP)
        final_from = total - peft_config.tfinal

        def after_load(module, incompatible_keys):
            # A run resumed in the final phase: its fixed pattern is the checkpoint's zeros (read
            # now: the first optimizer step would move them).
            if int(counter) > final_from:
                peft_config.rank_pattern = self._pattern_from_zeros(model)

        model.register_load_state_dict_post_hook(after_load)

        def allocate(optimizer):
            step = int(counter)  # steps done before this one (0 on the first)
            tuner.update_and_allocate(step)
            counter.add_(1)
            budget, masked = allocator.budget_schedule(step)
            if (masked and step < final_from) or step == final_from:  # a reallocation
                kept = sum(int((m.lora_E[ADAPTER] != 0).sum())
                           for m in svd_modules(model).values())
                logging.info(f"[espnet_lalora] adalora: step {step}: budget {budget}, "
                             f"ranks kept {kept}")

        return allocate

    @staticmethod
    def _pattern_from_zeros(model):
        return {n: (p != 0).view(-1).tolist() for n, p in model.named_parameters()
                if n.endswith(f".lora_E.{ADAPTER}")}

    def loss_term(self, model: nn.Module):
        """PEFT's orthogonality regularizer (``AdaLoraModel.forward``): the mean over A and B
        of ||A A^T - I||_F and ||B^T B - I||_F, times orth_reg_weight."""
        weight = model._adalora_tuner.peft_config[ADAPTER].orth_reg_weight
        if weight == 0:
            return None
        factors = [(n.endswith(f"lora_A.{ADAPTER}"), p) for n, p in model.named_parameters()
                   if n.endswith((f"lora_A.{ADAPTER}", f"lora_B.{ADAPTER}"))]

        def orthogonality():
            total = 0
            for is_a, p in factors:
                cov = p @ p.T if is_a else p.T @ p
                eye = torch.eye(cov.shape[0], device=cov.device, dtype=cov.dtype)
                total = total + torch.norm(cov - eye, p="fro")
            return weight * total / len(factors)

        return orthogonality

    def merge(self, model: nn.Module) -> int:
        modules = svd_modules(model)
        for name, module in modules.items():
            module.merge()
            _set_submodule(model, name, module.get_base_layer())
        for attr in (STEP, "_adalora_tuner", "peft_config"):
            if hasattr(model, attr):
                delattr(model, attr)
        return len(modules)

    def adapter_parameter(self, name: str) -> bool:
        return bool(_PARAM.search(name))

    def adapted_modules(self, model: nn.Module):
        return {n: m.r[ADAPTER] for n, m in svd_modules(model).items()}

    def rank_pattern(self, model: nn.Module):
        return {n: {"rank": int((m.lora_E[ADAPTER] != 0).sum()), "of": m.r[ADAPTER],
                    "l1": float(m.lora_E[ADAPTER].detach().abs().sum())}
                for n, m in svd_modules(model).items()}


METHODS = [AdaLoRAMethod()]
