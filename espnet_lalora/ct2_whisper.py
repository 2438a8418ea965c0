"""CTranslate2 Whisper models and openai-whisper checkpoints, both ways: read a ``model.bin`` into
an openai-whisper checkpoint (the installed base weights), and write any openai-whisper checkpoint
(a merged fine-tuned model) as a CTranslate2 / faster-whisper model folder.

CTranslate2 binary layout (version 6, little-endian): ``u32 version``, ``str spec_name``,
``u32 spec_revision``, ``u32 n_variables``, then per variable ``str name``, ``u8 rank``,
``rank x u32 shape``, ``u8 dtype``, ``u32 nbytes``, raw data; then ``u32 n_aliases`` and
``(str alias, str target)`` pairs. A ``str`` is ``u16 length`` + bytes, NUL-padded.
"""

import json
import re
import struct
from pathlib import Path
from typing import Dict, Tuple

import numpy as np
import torch

from espnet_lalora.fileio import atomic_dir, atomic_path

_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
_BF16 = 5


class CT2FormatError(ValueError):
    pass


def read_ct2_model(path) -> Tuple[str, Dict[str, torch.Tensor]]:
    """Return ``(spec_name, {variable name: tensor})`` with aliases resolved."""
    path = Path(path)
    data = path.read_bytes()
    pos = 0

    def take(fmt):
        nonlocal pos
        values = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return values

    def take_str():
        nonlocal pos
        (length,) = take("H")
        raw = data[pos : pos + length]
        pos += length
        return raw.rstrip(b"\0").decode("utf-8")

    try:
        (version,) = take("I")
        if version != 6:
            raise CT2FormatError(f"{path}: CTranslate2 binary version {version}, expected 6")
        spec_name = take_str()
        take("I")  # spec revision
        (n_variables,) = take("I")
        variables = {}
        for _ in range(n_variables):
            name = take_str()
            (rank,) = take("B")
            shape = take(f"{rank}I") if rank else ()
            dtype_id, nbytes = take("BI")
            raw = data[pos : pos + nbytes]
            pos += nbytes
            if dtype_id == _BF16:
                array = np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16
                tensor = torch.from_numpy(array.view(np.float32).reshape(shape).copy())
            elif dtype_id in _DTYPES:
                array = np.frombuffer(raw, dtype=_DTYPES[dtype_id]).reshape(shape)
                tensor = torch.from_numpy(array.copy())
            else:
                raise CT2FormatError(f"{path}: variable {name} has unknown dtype id {dtype_id}")
            variables[name] = tensor
        (n_aliases,) = take("I")
        for _ in range(n_aliases):
            alias, target = take_str(), take_str()
            variables[alias] = variables[target]
    except struct.error as e:
        raise CT2FormatError(f"{path}: truncated or not a CTranslate2 model.bin ({e})") from e
    return spec_name, variables


def _layer_count(variables, prefix):
    layer = re.compile(rf"^{prefix}/layer_(\d+)/")
    return len({m.group(1) for m in map(layer.match, variables) if m})


def ct2_to_whisper_checkpoint(variables: Dict[str, torch.Tensor], dtype=torch.float16) -> dict:
    """Map CTranslate2 Whisper variables onto openai-whisper's ``{"dims", "model_state_dict"}``,
    any size (layer counts, mel bins and vocabulary are read from the tensors). ``dtype`` None
    keeps the file's float type; quantized weights (int8/int16 with a ``weight_scale``) are
    dequantized to float32 first."""
    variables = dict(variables)
    for name in [n for n in variables if n.endswith("/weight_scale")]:
        weight, scale = variables[name[: -len("_scale")]], variables.pop(name).float()
        if scale.numel() > 1:  # one scale per output row
            scale = scale.reshape(-1, *[1] * (weight.dim() - 1))
        variables[name[: -len("_scale")]] = weight.float() / scale
    v = {name: tensor.to(dtype) if dtype is not None and tensor.is_floating_point() else tensor
         for name, tensor in variables.items()}
    sd = {}

    def linear(dst, src, bias=True):
        sd[dst + ".weight"] = v[src + "/weight"]
        if bias:
            sd[dst + ".bias"] = v[src + "/bias"]

    def layer_norm(dst, src):
        sd[dst + ".weight"] = v[src + "/gamma"]
        sd[dst + ".bias"] = v[src + "/beta"]

    def split_qkv(dst, src, parts):
        # CTranslate2 fuses projections along the output dimension; openai-whisper's key has no
        # bias (its slice of the fused bias is zero), so it is dropped.
        weights = v[src + "/weight"].chunk(len(parts), dim=0)
        biases = v[src + "/bias"].chunk(len(parts), dim=0)
        for part, w, b in zip(parts, weights, biases):
            sd[f"{dst}.{part}.weight"] = w.contiguous()
            if part != "key":
                sd[f"{dst}.{part}.bias"] = b.contiguous()

    def self_attention_and_mlp(dst, src):  # the parts encoder and decoder blocks share
        layer_norm(f"{dst}.attn_ln", f"{src}/self_attention/layer_norm")
        split_qkv(f"{dst}.attn", f"{src}/self_attention/linear_0", ["query", "key", "value"])
        linear(f"{dst}.attn.out", f"{src}/self_attention/linear_1")
        layer_norm(f"{dst}.mlp_ln", f"{src}/ffn/layer_norm")
        linear(f"{dst}.mlp.0", f"{src}/ffn/linear_0")
        linear(f"{dst}.mlp.2", f"{src}/ffn/linear_1")

    for i in range(2):
        linear(f"encoder.conv{i + 1}", f"encoder/conv{i + 1}")
    sd["encoder.positional_embedding"] = v["encoder/position_encodings/encodings"]
    n_audio_layer = _layer_count(v, "encoder")
    for i in range(n_audio_layer):
        self_attention_and_mlp(f"encoder.blocks.{i}", f"encoder/layer_{i}")
    layer_norm("encoder.ln_post", "encoder/layer_norm")

    sd["decoder.token_embedding.weight"] = v["decoder/embeddings/weight"]
    sd["decoder.positional_embedding"] = v["decoder/position_encodings/encodings"]
    n_text_layer = _layer_count(v, "decoder")
    for i in range(n_text_layer):
        src, dst = f"decoder/layer_{i}", f"decoder.blocks.{i}"
        self_attention_and_mlp(dst, src)
        layer_norm(f"{dst}.cross_attn_ln", f"{src}/attention/layer_norm")
        linear(f"{dst}.cross_attn.query", f"{src}/attention/linear_0")
        split_qkv(f"{dst}.cross_attn", f"{src}/attention/linear_1", ["key", "value"])
        linear(f"{dst}.cross_attn.out", f"{src}/attention/linear_2")
    layer_norm("decoder.ln", "decoder/layer_norm")

    audio_ctx, audio_state = sd["encoder.positional_embedding"].shape
    text_ctx, text_state = sd["decoder.positional_embedding"].shape
    dims = dict(
        n_mels=int(sd["encoder.conv1.weight"].shape[1]),
        n_vocab=int(sd["decoder.token_embedding.weight"].shape[0]),
        n_audio_ctx=int(audio_ctx),
        n_audio_state=int(audio_state),
        n_audio_head=int(variables["encoder/num_heads"].item()),
        n_audio_layer=n_audio_layer,
        n_text_ctx=int(text_ctx),
        n_text_state=int(text_state),
        n_text_head=int(variables["decoder/num_heads"].item()),
        n_text_layer=n_text_layer,
    )
    return {"dims": dims, "model_state_dict": sd}


def convert_ct2_model(model_bin, output, dtype=torch.float16) -> dict:
    """Convert ``model_bin`` and save the checkpoint atomically at ``output``; return its dims."""
    spec_name, variables = read_ct2_model(model_bin)
    if "Whisper" not in spec_name:
        raise CT2FormatError(f"{model_bin}: spec {spec_name!r} is not a Whisper model")
    checkpoint = ct2_to_whisper_checkpoint(variables, dtype)
    with atomic_path(output) as tmp:
        torch.save(checkpoint, tmp)
    return checkpoint["dims"]


def whisper_to_ct2_variables(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """openai-whisper's state dict under CTranslate2's variable names: the inverse of
    ``ct2_to_whisper_checkpoint`` (projections fused again, the key's zero bias put back)."""
    v = {}

    def linear(dst, src):
        v[dst + "/weight"] = state[src + ".weight"]
        v[dst + "/bias"] = state[src + ".bias"]

    def layer_norm(dst, src):
        v[dst + "/gamma"], v[dst + "/beta"] = state[src + ".weight"], state[src + ".bias"]

    def fuse(dst, src, parts):
        weights = [state[f"{src}.{p}.weight"] for p in parts]
        v[dst + "/weight"] = torch.cat(weights)
        v[dst + "/bias"] = torch.cat([state.get(f"{src}.{p}.bias", w.new_zeros(w.shape[0]))
                                      for p, w in zip(parts, weights)])

    def self_attention_and_mlp(dst, src):
        layer_norm(f"{dst}/self_attention/layer_norm", f"{src}.attn_ln")
        fuse(f"{dst}/self_attention/linear_0", f"{src}.attn", ["query", "key", "value"])
        linear(f"{dst}/self_attention/linear_1", f"{src}.attn.out")
        layer_norm(f"{dst}/ffn/layer_norm", f"{src}.mlp_ln")
        linear(f"{dst}/ffn/linear_0", f"{src}.mlp.0")
        linear(f"{dst}/ffn/linear_1", f"{src}.mlp.2")

    for i in (1, 2):
        linear(f"encoder/conv{i}", f"encoder.conv{i}")
    v["encoder/position_encodings/encodings"] = state["encoder.positional_embedding"]
    n_audio_layer = len({k.split(".")[2] for k in state if k.startswith("encoder.blocks.")})
    for i in range(n_audio_layer):
        self_attention_and_mlp(f"encoder/layer_{i}", f"encoder.blocks.{i}")
    layer_norm("encoder/layer_norm", "encoder.ln_post")
    v["decoder/embeddings/weight"] = state["decoder.token_embedding.weight"]
    v["decoder/position_encodings/encodings"] = state["decoder.positional_embedding"]
    n_text_layer = len({k.split(".")[2] for k in state if k.startswith("decoder.blocks.")})
    for i in range(n_text_layer):
        dst, src = f"decoder/layer_{i}", f"decoder.blocks.{i}"
        self_attention_and_mlp(dst, src)
        layer_norm(f"{dst}/attention/layer_norm", f"{src}.cross_attn_ln")
        linear(f"{dst}/attention/linear_0", f"{src}.cross_attn.query")
        fuse(f"{dst}/attention/linear_1", f"{src}.cross_attn", ["key", "value"])
        linear(f"{dst}/attention/linear_2", f"{src}.cross_attn.out")
    layer_norm("decoder/layer_norm", "decoder.ln")
    # Whisper ties the output projection to the token embedding
    v["decoder/projection/weight"] = v["decoder/embeddings/weight"]
    return v


def _set_variable(spec, name: str, value):
    """``encoder/layer_0/self_attention/linear_1/weight`` -> spec.encoder.layer[0]...weight"""
    *path, leaf = name.split("/")
    for part in path:
        if hasattr(spec, part):
            spec = getattr(spec, part)
        else:  # a list attribute: layer_3 -> layer[3], linear_0 -> linear[0]
            base, index = part.rsplit("_", 1)
            spec = getattr(spec, base)[int(index)]
    setattr(spec, leaf, value)


YUE_ID = 50358  # v3's <|yue|>: every special token from <|translate|> on moves up by one


def v3_template(v2_template, output) -> Path:
    """The tokenizer, vocabulary and decoding config of a v3 CTranslate2 Whisper (51,866 tokens),
    made from a v1/v2 one's: ``<|yue|>`` inserted at 50358, the ids after it moved, its language
    id added (as in the large-v3 conversions faster-whisper publishes). No weights."""
    v2_template, output = Path(v2_template), Path(output)
    if (output / "config.json").is_file():
        return output

    def moved(i):
        return i + 1 if i >= YUE_ID else i

    vocabulary = (v2_template / "vocabulary.txt").read_text(encoding="utf-8").splitlines()
    if len(vocabulary) != 51865:
        raise CT2FormatError(f"{v2_template}: {len(vocabulary)} tokens, expected a v1/v2 "
                             f"Whisper's 51,865")
    vocabulary.insert(YUE_ID, "<|yue|>")
    config = json.loads((v2_template / "config.json").read_text())
    config["lang_ids"] = sorted(config["lang_ids"] + [YUE_ID])
    config["suppress_ids"] = [moved(i) for i in config["suppress_ids"]]
    config["suppress_ids_begin"] = [moved(i) for i in config["suppress_ids_begin"]]
    config["alignment_heads"] = []  # another model: write_ct2_model picks its default
    tokenizer = json.loads((v2_template / "tokenizer.json").read_text(encoding="utf-8"))
    added = [dict(t, id=moved(t["id"])) for t in tokenizer["added_tokens"]]
    yue = dict(next(t for t in added if t["content"] == "<|su|>"), id=YUE_ID, content="<|yue|>")
    tokenizer["added_tokens"] = sorted(added + [yue], key=lambda t: t["id"])
    with atomic_dir(output) as tmp:
        (tmp / "vocabulary.txt").write_text("\n".join(vocabulary) + "\n", encoding="utf-8")
        (tmp / "config.json").write_text(json.dumps(config, indent=1))
        (tmp / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False),
                                            encoding="utf-8")
    return output


def write_ct2_model(checkpoint: dict, output_dir, template_dir) -> Path:
    """Save an openai-whisper checkpoint as a CTranslate2 Whisper folder for faster-whisper,
    weights in the checkpoint's dtype. Tokenizer, vocabulary and decoding config (suppressed
    tokens, language ids, alignment heads) come from ``template_dir``, an installed CTranslate2
    Whisper of the same size, so nothing is fetched from the network."""
    from ctranslate2.specs import whisper_spec

    template_dir, output_dir = Path(template_dir), Path(output_dir)
    dims, state = checkpoint["dims"], checkpoint["model_state_dict"]
    spec = whisper_spec.WhisperSpec(dims["n_audio_layer"], dims["n_audio_head"],
                                    dims["n_text_layer"], dims["n_text_head"])
    for name, tensor in whisper_to_ct2_variables(state).items():
        _set_variable(spec, name, tensor.detach().cpu().numpy())
    template_config = json.loads((template_dir / "config.json").read_text())
    for key in ("suppress_ids", "suppress_ids_begin", "lang_ids"):
        setattr(spec.config, key, template_config.get(key))
    # alignment heads (word timestamps) belong to one model size; another size gets every head
    # of its upper half, CTranslate2's converters' default
    heads = template_config.get("alignment_heads")
    if not heads or _layer_count(read_ct2_model(template_dir / "model.bin")[1],
                                 "decoder") != dims["n_text_layer"]:
        heads = [(layer, head) for layer in range(dims["n_text_layer"] // 2, dims["n_text_layer"])
                 for head in range(dims["n_text_head"])]
    spec.config.alignment_heads = heads
    vocabulary = (template_dir / "vocabulary.txt").read_text(encoding="utf-8").splitlines()
    if len(vocabulary) != dims["n_vocab"]:
        raise CT2FormatError(f"{template_dir}: vocabulary of {len(vocabulary)} tokens, the model "
                             f"has {dims['n_vocab']}: use a template of the same Whisper family")
    spec.register_vocabulary(vocabulary)
    spec.register_file(str(template_dir / "tokenizer.json"))
    spec.validate()
    spec.optimize()
    with atomic_dir(output_dir) as tmp:
        spec.save(str(tmp))
        if dims["n_mels"] != 80:  # faster-whisper computes 80 mel bins unless told otherwise
            (tmp / "preprocessor_config.json").write_text(
                json.dumps({"feature_size": dims["n_mels"]}))
    return output_dir
