"""Hugging Face transformers Whisper folders (``config.json`` + ``model.safetensors``, e.g. a local
copy of ``openai/whisper-large-v3``) as openai-whisper checkpoints.

transformers' ``WhisperForConditionalGeneration`` holds the same tensors under other names
(``model.encoder.layers.{i}.self_attn.q_proj`` for ``encoder.blocks.{i}.attn.query``, ...); its
output projection ``proj_out`` is tied to the token embedding, as in openai-whisper, so it is not
kept. Tensors keep the folder's dtype (no rounding on the way).
"""

import json
from pathlib import Path
from typing import Dict

import torch

from espnet_lalora.fileio import atomic_path


class HFFormatError(ValueError):
    pass


def is_hf_folder(path) -> bool:
    path = Path(path)
    return (path / "config.json").is_file() and any(
        (path / f).is_file() for f in ("model.safetensors", "model.safetensors.index.json"))


def read_hf_model(folder):
    """``(config dict, {name: tensor})`` of a transformers Whisper folder (one safetensors file,
    or shards listed by ``model.safetensors.index.json``)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise HFFormatError(f"{folder}: no config.json (a Hugging Face model folder has "
                            "config.json and model.safetensors)")
    config = json.loads((folder / "config.json").read_text())
    if config.get("model_type") != "whisper":
        raise HFFormatError(f"{folder}/config.json: model_type {config.get('model_type')!r}, "
                            "not a Whisper model")
    index = folder / "model.safetensors.index.json"
    if (folder / "model.safetensors").is_file():
        files = [folder / "model.safetensors"]
    elif index.is_file():
        files = [folder / f for f in sorted(set(json.loads(index.read_text())["weight_map"]
                                                .values()))]
    else:
        raise HFFormatError(f"{folder}: no model.safetensors (pytorch_model.bin is not read: "
                            "save the model with save_pretrained(..., safe_serialization=True))")
    state = {}
    for f in files:
        state.update(load_file(str(f)))
    return config, state


def hf_to_whisper_checkpoint(config: dict, state: Dict[str, torch.Tensor]) -> dict:
    """openai-whisper's ``{"dims", "model_state_dict"}`` from a transformers Whisper."""
    width = config["d_model"]
    for side in ("encoder", "decoder"):
        if config.get(f"{side}_ffn_dim", 4 * width) != 4 * width:  # openai-whisper's MLP is 4 d
            raise HFFormatError(f"{side}_ffn_dim {config[f'{side}_ffn_dim']} is not 4 x d_model "
                                f"({width}): not a layout openai-whisper can hold")
    if config.get("scale_embedding"):
        raise HFFormatError("scale_embedding is true: openai-whisper does not scale embeddings")
    state = {k.removeprefix("model."): v for k, v in state.items()}
    sd = {}

    def copy(dst, src, bias=True):
        sd[dst + ".weight"] = state[src + ".weight"]
        if bias:
            sd[dst + ".bias"] = state[src + ".bias"]

    def attention(dst, src):  # the key has no bias in either library
        for ours, theirs in (("query", "q_proj"), ("key", "k_proj"), ("value", "v_proj"),
                             ("out", "out_proj")):
            copy(f"{dst}.{ours}", f"{src}.{theirs}", bias=ours != "key")

    def block(dst, src, cross):
        attention(f"{dst}.attn", f"{src}.self_attn")
        copy(f"{dst}.attn_ln", f"{src}.self_attn_layer_norm")
        if cross:
            attention(f"{dst}.cross_attn", f"{src}.encoder_attn")
            copy(f"{dst}.cross_attn_ln", f"{src}.encoder_attn_layer_norm")
        copy(f"{dst}.mlp.0", f"{src}.fc1")
        copy(f"{dst}.mlp.2", f"{src}.fc2")
        copy(f"{dst}.mlp_ln", f"{src}.final_layer_norm")

    try:
        copy("encoder.conv1", "encoder.conv1")
        copy("encoder.conv2", "encoder.conv2")
        sd["encoder.positional_embedding"] = state["encoder.embed_positions.weight"]
        for i in range(config["encoder_layers"]):
            block(f"encoder.blocks.{i}", f"encoder.layers.{i}", cross=False)
        copy("encoder.ln_post", "encoder.layer_norm")
        sd["decoder.token_embedding.weight"] = state["decoder.embed_tokens.weight"]
        sd["decoder.positional_embedding"] = state["decoder.embed_positions.weight"]
        for i in range(config["decoder_layers"]):
            block(f"decoder.blocks.{i}", f"decoder.layers.{i}", cross=True)
        copy("decoder.ln", "decoder.layer_norm")
    except KeyError as e:
        raise HFFormatError(f"tensor {e} missing: not a complete Whisper model") from e
    proj = state.get("proj_out.weight")
    if proj is not None and not torch.equal(proj, sd["decoder.token_embedding.weight"]):
        raise HFFormatError("proj_out differs from the token embedding: openai-whisper ties them")
    dims = dict(n_mels=config["num_mel_bins"], n_vocab=config["vocab_size"],
                n_audio_ctx=config["max_source_positions"], n_audio_state=width,
                n_audio_head=config["encoder_attention_heads"],
                n_audio_layer=config["encoder_layers"],
                n_text_ctx=config["max_target_positions"], n_text_state=width,
                n_text_head=config["decoder_attention_heads"],
                n_text_layer=config["decoder_layers"])
    return {"dims": dims, "model_state_dict": {k: v.contiguous() for k, v in sd.items()}}


def convert_hf_model(folder, output) -> dict:
    """Convert the transformers folder and save the checkpoint atomically; return its dims."""
    checkpoint = hf_to_whisper_checkpoint(*read_hf_model(folder))
    with atomic_path(output) as tmp:
        torch.save(checkpoint, tmp)
    return checkpoint["dims"]
