"""BitFit (Ben Zaken et al., ACL 2022), a baseline of the S2-LoRA paper: every bias vector of the
model trains (convolutions, Linear and LayerNorm), nothing else. No new parameters, so the
trained model is its own merged export."""

from torch import nn

from espnet_lalora.methods.base import AdapterConfigError, Method, MethodConfig, freeze_all_but


def is_bias(name: str) -> bool:
    return name.endswith(".bias")


class BitFitMethod(Method):
    name = "bitfit"
    description = "every bias vector (Linear, LayerNorm, convolutions); no new parameters"
    config_class = MethodConfig

    def inject(self, model: nn.Module, config: MethodConfig) -> None:
        if not any(is_bias(n) for n, _ in model.named_parameters()):
            raise AdapterConfigError("bitfit: the model has no bias parameter")
        freeze_all_but(model, is_bias)


METHODS = [BitFitMethod()]
