"""Training memory of a Whisper size and method, estimated before a run (param_report --memory).

Four terms, in bytes:

- weights: every parameter in float32 (4 B); with AMP autocast keeps a 16-bit copy of each weight
  it casts (+2 B per parameter);
- gradients and optimizer state: 4 B + Adam's two moments 8 B per trainable parameter;
- activations: the tensors autograd keeps for the backward pass, counted per block from
  openai-whisper's modules (pre-LN attention + 4d MLP): about 18 d-wide tensors per token of an
  encoder block (LayerNorm inputs and outputs, q, k, v and their scaled copies, the attention
  output, the MLP's 4d input, GELU input and output), 30 per token of a decoder block (self and
  cross attention) plus the cross keys/values over the audio frames, each attention's
  probabilities (heads x queries x keys, kept in float32 by openai-whisper's softmax and once
  more in the activation type), the convolution front end, and the vocabulary-wide logits with
  their log-softmax (float32). Activation checkpointing keeps each block's input only, plus one
  block's activations while it is recomputed;
- not counted: the framework itself (CUDA context, allocator slack, Python), data loading.

The counts were checked against peaks measured on CPU (docs/benchmarks.md, "Training memory").
"""

from dataclasses import dataclass

GIB = 1024 ** 3


@dataclass
class Workload:
    batch: int = 8
    audio_seconds: float = 30.0  # 30: Whisper's padded input; short utterances unpadded cost less
    text_tokens: int = 100       # decoder tokens per utterance (prompt included)
    amp: bool = False            # 16-bit autocast (weights stay float32)
    checkpointing: bool = False  # activation checkpointing per block


def activation_bytes(dims: dict, w: Workload) -> int:
    d, heads = dims["n_audio_state"], dims["n_audio_head"]
    frames = min(int(w.audio_seconds * 50), dims["n_audio_ctx"])  # after conv2's stride 2
    tokens, act = w.text_tokens, 2 if w.amp else 4
    probs = act + 4  # softmax output in float32, and its cast used by the next matmul

    def attention(queries, keys):
        return heads * queries * keys * probs

    encoder_block = 18 * frames * d * act + attention(frames, frames)
    decoder_block = (30 * tokens * d + 3 * frames * d) * act + attention(tokens, tokens) \
        + attention(tokens, frames)
    front = (dims["n_mels"] * 2 * frames + 3 * d * 2 * frames) * act
    logits = tokens * dims["n_vocab"] * (act + 4 + 4)  # logits, float32 copy, log-softmax
    if w.checkpointing:  # block inputs, and the largest block again while it is recomputed
        blocks = (dims["n_audio_layer"] * frames + dims["n_text_layer"] * tokens) * d * act \
            + max(encoder_block, decoder_block)
    else:
        blocks = dims["n_audio_layer"] * encoder_block + dims["n_text_layer"] * decoder_block
    return w.batch * (front + blocks + logits)


def training_memory(dims: dict, total: int, trainable: int, w: Workload) -> dict:
    """Bytes per term (see the module doc) and their sum."""
    out = {"weights": total * (4 + (2 if w.amp else 0)),
           "gradients+adam": trainable * (4 + 8),
           "activations": activation_bytes(dims, w)}
    out["total"] = sum(out.values())
    return out
