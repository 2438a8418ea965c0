"""Trainable-parameter reports: what a method trains, in absolute numbers, as a share of raw LoRA
and of the model, and which modules it adapts. The same function serves stage 9 (the trained
model) and ``espnet_lalora.bin.param_report`` (no training: a weightless model skeleton).
"""

from collections import Counter
from typing import Optional

import torch
from torch import nn

from espnet_lalora.methods.base import Method, count_parameters
from espnet_lalora.methods.lora import ALL_LINEARS, DEFAULT_RANK
from espnet_lalora.whisper_sizes import size_of

def whisper_skeleton(name: str) -> nn.Module:
    """ESPnet's Whisper ASR model layout (``encoder.encoders`` / ``decoder.decoders``) on the meta
    device: the right names and shapes, no weights, no memory, built in milliseconds."""
    from whisper.model import AudioEncoder, TextDecoder

    size = size_of(name)  # a clear error for unknown and English-only names
    model, model.encoder, model.decoder = nn.Module(), nn.Module(), nn.Module()
    with torch.device("meta"):
        model.encoder.encoders = AudioEncoder(size.n_mels, size.n_audio_ctx, size.width,
                                              size.heads, size.encoder_layers)
        model.decoder.decoders = TextDecoder(size.n_vocab, size.n_text_ctx, size.width,
                                             size.heads, size.decoder_layers)
    return model


def raw_lora_parameters(model: nn.Module, rank: int = DEFAULT_RANK) -> int:
    """Raw LoRA's trainable count at ``rank`` on this model: r (in + out) per block Linear."""
    # LoRALinear is a Linear too; PEFT's layers (AdaLoRA) hold the Linear as ``.base_layer``.
    names = {n.removesuffix(".base_layer"): m for n, m in model.named_modules()
             if isinstance(m, nn.Linear) and ".blocks." in n}
    return sum(rank * (m.in_features + m.out_features) for n, m in names.items()
               if any(n.endswith("." + t) for t in ALL_LINEARS))


def _module_type(name: str) -> str:
    side = "encoder" if name.startswith("encoder.") else "decoder"
    return f"{side} {'.'.join(name.split('.')[-2:])}"


def parameter_report(model: nn.Module, method: Optional[Method],
                     reference_rank: int = DEFAULT_RANK) -> dict:
    """Counts of a model with its method in place (``method`` None: no adapter, all trained);
    ``percent_of_raw_lora`` is against raw LoRA at ``reference_rank`` on the same model."""
    trainable, total = count_parameters(model)
    added = sum(p.numel() for n, p in model.named_parameters()
                if method is not None and method.adapter_parameter(n))
    base_total = total - added
    adapted = method.adapted_modules(model) if method is not None else {}
    raw = raw_lora_parameters(model, reference_rank)
    return {
        "method": method.name if method is not None else "full",
        "trainable": trainable,
        "base_parameters": base_total,
        "trainable_percent_of_model": 100.0 * trainable / base_total,
        "raw_lora_rank": reference_rank,
        "raw_lora_trainable": raw,
        "percent_of_raw_lora": 100.0 * trainable / raw,
        "adapted_modules": len(adapted),
        "ranks": sorted({r for r in adapted.values() if r is not None}),
        "adapted_by_type": dict(sorted(Counter(map(_module_type, adapted)).items())),
        "trainable_bias_vectors": sum(1 for n, p in model.named_parameters()
                                      if p.requires_grad and n.endswith(".bias")),
    }
