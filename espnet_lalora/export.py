"""Stage 9: from a trained ESPnet model with adapters to plain models.

- ``merged/``: an ordinary ESPnet Whisper model (adapters folded into the weights, no adapter in
  its config): stock ``espnet2.bin.asr_inference`` decodes it, with zero inference overhead;
- ``adapter/``: the adapter weights alone (kilobytes to megabytes), for the base model;
- ``whisper/model.pt``: an openai-whisper checkpoint, ``whisper.load_model(path)``.
"""

import copy
from collections import Counter
from pathlib import Path

import torch
import yaml

from espnet_lalora.lora import count_parameters, lora_modules, merge_lora


def load_trained_model(config: Path, checkpoint: Path):
    """Build the model as trained (adapters included) and load the checkpoint, checking that
    every trained parameter found its place (ESPnet loads adapter models non-strictly)."""
    from espnet_lalora.espnet_plugin import ASRTask

    model, args = ASRTask.build_model_from_file(config, None, "cpu")
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    expected = {n for n, p in model.named_parameters() if p.requires_grad}
    names = set(model.state_dict())
    unknown = sorted(set(state) - names)
    if unknown:
        raise ValueError(f"{checkpoint}: {len(unknown)} tensors match no parameter of the model "
                         f"built from {config} (e.g. {unknown[:3]})")
    missing = sorted(expected - set(state))
    if missing:
        raise ValueError(f"{checkpoint}: trained parameters missing (e.g. {missing[:3]})")
    model.load_state_dict(state, strict=False)
    return model.eval(), args


def parameter_report(model, method: str) -> dict:
    trainable, total = count_parameters(model)
    adapted = Counter(".".join(name.split(".")[-2:]) for name in lora_modules(model))
    adapter_numel = sum(p.numel() for n, p in model.named_parameters()
                        if n.endswith(".lora_A") or n.endswith(".lora_B"))
    base_total = total - adapter_numel
    return {"method": method, "trainable": trainable, "base_parameters": base_total,
            "trainable_percent_of_model": 100.0 * trainable / base_total,
            "adapted_modules": len(lora_modules(model)),
            "adapted_by_type": dict(sorted(adapted.items()))}


def espnet_to_whisper_checkpoint(model) -> dict:
    """openai-whisper's ``{"dims", "model_state_dict"}`` from an ESPnet Whisper model."""
    encoder, decoder = model.encoder.encoders, model.decoder.decoders
    state = {}
    for prefix, module in (("encoder", encoder), ("decoder", decoder)):
        for name, tensor in module.state_dict().items():
            state[f"{prefix}.{name}"] = tensor.detach().clone().half()
    dims = dict(
        n_mels=encoder.conv1.in_channels, n_vocab=decoder.token_embedding.num_embeddings,
        n_audio_ctx=encoder.positional_embedding.shape[0],
        n_audio_state=encoder.positional_embedding.shape[1],
        n_audio_head=encoder.blocks[0].attn.n_head, n_audio_layer=len(encoder.blocks),
        n_text_ctx=decoder.positional_embedding.shape[0],
        n_text_state=decoder.positional_embedding.shape[1],
        n_text_head=decoder.blocks[0].attn.n_head, n_text_layer=len(decoder.blocks))
    return {"dims": dims, "model_state_dict": state}


@torch.no_grad()
def merge_check(unmerged, merged, seconds: float = 2.0) -> float:
    """Max |difference| of decoder outputs of the merged and unmerged models on one input."""
    torch.manual_seed(0)
    speech = torch.randn(1, int(16000 * seconds)) * 0.1
    lengths = torch.tensor([speech.shape[1]])
    tokens = torch.tensor([[50258, 50259, 50359, 50363, 440, 1002]])
    outs = []
    for model in (unmerged, merged):
        enc, enc_lens = model.encode(speech, lengths)
        logits, _ = model.decoder(enc, enc_lens, tokens, torch.tensor([tokens.shape[1]]))
        outs.append(logits)
    return (outs[0] - outs[1]).abs().max().item()


def save_atomic(obj, path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def export(asr_exp: Path, checkpoint_name: str, out: Path, log=print) -> dict:
    config_path = asr_exp / "config.yaml"
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    method = config.get("adapter", "lora") if config.get("use_adapter") else "full"
    model, _ = load_trained_model(config_path, asr_exp / checkpoint_name)
    report = parameter_report(model, method)
    log(f"{method}: {report['trainable']:,} trainable parameters "
        f"({report['trainable_percent_of_model']:.3f}% of {report['base_parameters']:,}) "
        f"in {report['adapted_modules']} adapted modules")

    adapter_state = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    save_atomic(adapter_state, out / "adapter" / "adapter.pth")
    (out / "adapter" / "adapter.yaml").write_text(yaml.safe_dump(
        {"adapter": method, "adapter_conf": config.get("adapter_conf", {}),
         "base": config["encoder_conf"].get("whisper_model")}, sort_keys=False))

    merged = copy.deepcopy(model)
    count = merge_lora(merged)
    diff = merge_check(model, merged)
    report["merge_max_abs_diff"] = diff
    log(f"merged {count} adapters; max |merged - unmerged| decoder output = {diff:.2e}")
    merged_config = dict(config, use_adapter=False, adapter_conf={})
    save_atomic(merged.state_dict(), out / "merged" / "model.pth")
    (out / "merged" / "config.yaml").write_text(
        yaml.safe_dump(merged_config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    save_atomic(espnet_to_whisper_checkpoint(merged), out / "whisper" / "model.pt")
    (out / "params.yaml").write_text(yaml.safe_dump(report, sort_keys=False))
    return report
