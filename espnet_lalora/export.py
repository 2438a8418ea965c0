"""Stage 9: from a trained ESPnet model with adapters to plain models.

- ``merged/``: an ordinary ESPnet Whisper model (adapters folded into the weights, no adapter in
  its config): stock ``espnet2.bin.asr_inference`` decodes it, with zero inference overhead;
- ``adapter/``: the adapter weights alone (kilobytes to megabytes), for the base model;
- ``whisper/model.pt``: an openai-whisper checkpoint, ``whisper.load_model(path)``;
- ``ct2/``: a CTranslate2 model folder, ``faster_whisper.WhisperModel(path)``.

Each method merges itself (``Method.merge``); a method that trains the model's own weights
(BitFit) has nothing to merge and is exported as it is.
"""

import copy
from pathlib import Path

import torch
import yaml

from espnet_lalora.config import write_config
from espnet_lalora.ct2_whisper import write_ct2_model
from espnet_lalora.fileio import atomic_path, write_text_atomic
from espnet_lalora.methods import method_of
from espnet_lalora.methods.module_grid import write_rank_pattern
from espnet_lalora.params import parameter_report
from espnet_lalora.whisper_weights import ct2_template


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
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def export(asr_exp: Path, checkpoint_name: str, out: Path, log=print) -> dict:
    config_path = asr_exp / "config.yaml"
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    method, method_config = method_of(config)
    name = method.name if method is not None else "full"
    model, args = load_trained_model(config_path, asr_exp / checkpoint_name)
    report = parameter_report(model, method)
    log(f"{name}: {report['trainable']:,} trainable parameters "
        f"({report['trainable_percent_of_model']:.3f}% of {report['base_parameters']:,}) "
        f"in {report['adapted_modules']} adapted modules")

    pattern = method.rank_pattern(model) if method is not None else None
    if pattern is not None:
        written = write_rank_pattern(name, pattern, out)
        report["rank_pattern_kept"], report["rank_pattern_of"] = written["kept"], written["of"]
        log(f"{name}: learned ranks {written['kept']} of {written['of']} kept "
            f"(rank_pattern.json, rank_pattern.png)")

    adapter_state = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    save_atomic(adapter_state, out / "adapter" / "adapter.pth")
    write_config({"adapter": name, "adapter_conf": config.get("adapter_conf", {}),
                  "base": config["encoder_conf"].get("whisper_model")},
                 out / "adapter" / "adapter.yaml")

    merged = copy.deepcopy(model)
    count = method.merge(merged) if method is not None else 0
    if count == 0:
        log(f"{name}: the trained weights are the model's own; nothing to merge")
        report["merge_max_abs_diff"] = 0.0
    else:
        diff = merge_check(model, merged)
        report["merge_max_abs_diff"] = diff
        log(f"merged {count} adapters; max |merged - unmerged| decoder output = {diff:.2e}")
    merged_config = dict(config, use_adapter=False, adapter_conf={})
    save_atomic(merged.state_dict(), out / "merged" / "model.pth")
    write_config(merged_config, out / "merged" / "config.yaml")
    whisper_checkpoint = espnet_to_whisper_checkpoint(merged)
    save_atomic(whisper_checkpoint, out / "whisper" / "model.pt")
    write_ct2_model(whisper_checkpoint, out / "ct2",
                    ct2_template(whisper_checkpoint["dims"]["n_vocab"], log=log))
    log(f"wrote {out / 'ct2'} (CTranslate2: faster_whisper.WhisperModel)")
    if method is not None:
        report.update(method.export_more(model, args, config, method_config, out, save_atomic,
                                         log))
    write_text_atomic(out / "params.yaml", yaml.safe_dump(report, sort_keys=False))
    return report
