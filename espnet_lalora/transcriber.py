"""An ESPnet Whisper model with this project's kv-cached, batched beam search
(:mod:`espnet_lalora.decoding`): ``load_model`` and ``WhisperTranscriber``, used by stage 10's
``whisper_inference``, ``check_exports`` and the benchmarks."""

import numpy as np
import torch

from espnet_lalora.quiet import quiet_espnet_imports


def load_model(config, model_file, device):
    """An ESPnet model from its config and weights; ``model_file`` may also be the
    ``experts.pth`` of a language-expert bundle (its folder has ``experts.yaml``): the model is
    then built from the config (base weights) and the experts loaded into it."""
    from pathlib import Path

    quiet_espnet_imports()
    from espnet_lalora.espnet_plugin import ASRTask

    model_file = None if model_file in (None, "none", "None") else model_file
    bundle = model_file is not None and (Path(model_file).parent / "experts.yaml").is_file()
    model, _ = ASRTask.build_model_from_file(config, None if bundle else model_file, device)
    if bundle:
        from espnet_lalora.methods.expert_bundle import load_bundle_into

        load_bundle_into(model, Path(model_file).parent)
    return model.eval()


def quantize_int8(model):
    """Dynamic int8 quantization for CPU decoding, in place: every plain Linear of the decoder
    blocks (openai-whisper's ``Linear`` subclass included; adapter layers that are not merged
    stay float) becomes a dynamically quantized one (weights int8 per output channel,
    activations quantized on the fly, one scale per tensor).

    The encoder and the output projection stay float32: with one activation scale per tensor,
    Whisper's outlier activations cost too much there. Measured on 8 espeak-ng utterances,
    zero-shot base, greedy, CER 25.4 in float32; 23.0 with the decoder blocks in int8; 44.5
    with the encoder's; 58.7 with everything including the output projection. (CTranslate2
    scales activations per row, which is why its int8 keeps its accuracy.)"""
    import whisper.model
    from torch.ao.nn.quantized.dynamic import Linear as DynamicInt8Linear
    from torch.ao.quantization import per_channel_dynamic_qconfig

    def as_int8(linear):
        plain = torch.nn.Linear(linear.in_features, linear.out_features,
                                bias=linear.bias is not None)
        plain.load_state_dict(linear.state_dict())
        plain.qconfig = per_channel_dynamic_qconfig
        return DynamicInt8Linear.from_float(plain)

    def convert(module):
        for name, child in module.named_children():
            if type(child) in (torch.nn.Linear, whisper.model.Linear):
                setattr(module, name, as_int8(child))
            else:
                convert(child)

    for block in model.decoder.decoders.blocks:
        convert(block)
    return model


def _fused_attention(self, q, k, v, mask=None):
    """openai-whisper's ``MultiHeadAttention.qkv_attention`` through PyTorch's fused
    ``scaled_dot_product_attention``: the same softmax(q k^T / sqrt(d)) v, without the
    (heads, T, T) float copies and the permuted q/k/v copies; the attention weights are not
    returned (openai-whisper's blocks drop them)."""
    import torch.nn.functional as F

    n, length = q.shape[:2]
    q, k, v = (x.view(x.shape[0], x.shape[1], self.n_head, -1).transpose(1, 2) for x in (q, k, v))
    out = F.scaled_dot_product_attention(
        q, k, v, attn_mask=None if mask is None else mask[:length, :length])
    return out.transpose(1, 2).reshape(n, length, -1), None


def use_fused_attention(model):
    """The encoder's self-attention through ``scaled_dot_product_attention``, in place (an
    inference speed-up: 30-s padded Whisper base encoder 0.56 -> 0.32 s on 2 CPU threads; the
    output differs from openai-whisper's by float rounding, about 1e-4). Training keeps ESPnet's
    modules untouched: only the transcriber calls this."""
    import types

    for block in model.encoder.encoders.blocks:
        block.attn.qkv_attention = types.MethodType(_fused_attention, block.attn)
    return model


WINDOW_SAMPLES = 30 * 16000


def windows(speech: np.ndarray, padded: bool) -> list:
    """The pieces Whisper reads of an utterance: with 30-s padded input, consecutive 30-s
    windows (decoded independently, as faster-whisper reads long audio without timestamps;
    a single window would drop everything after 30 s); unpadded: the whole utterance."""
    if not padded or len(speech) <= WINDOW_SAMPLES:
        return [speech]
    return [speech[i:i + WINDOW_SAMPLES] for i in range(0, len(speech), WINDOW_SAMPLES)]


class WhisperTranscriber:
    """An ESPnet Whisper model plus this project's decoder; ``__call__`` decodes a batch.
    ``fused_attention``: the encoder's attention through PyTorch's fused kernel (see
    ``use_fused_attention``); False keeps openai-whisper's arithmetic bit for bit."""

    def __init__(self, model, device="cpu", fused_attention=True):
        import whisper.tokenizer
        from espnet2.text.build_tokenizer import build_tokenizer
        from espnet2.text.whisper_token_id_converter import OpenAIWhisperTokenIDConverter

        from espnet_lalora.decoding import CachedWhisperDecoder, whisper_suppress_tokens
        from espnet_lalora.whisper_sizes import num_languages

        self.model, self.device = model, device
        if fused_attention:
            use_fused_attention(model)
        self.decoder = CachedWhisperDecoder(model.decoder.decoders)
        vocabulary = model.decoder.decoders.token_embedding.num_embeddings
        self.whisper_tokenizer = whisper.tokenizer.get_tokenizer(
            True, num_languages=num_languages(vocabulary))  # 100 for v3: ids move
        self.espnet_tokenizer = build_tokenizer(token_type="whisper_multilingual",
                                                bpemodel="whisper_multilingual")
        self.converter = OpenAIWhisperTokenIDConverter(model_type="whisper_multilingual")
        self.suppress = whisper_suppress_tokens(self.whisper_tokenizer)
        self.blank = self.whisper_tokenizer.encode(" ") + [self.whisper_tokenizer.eot]

    def language_token(self, lang) -> int:
        t = self.whisper_tokenizer
        lang_token = t.tokenizer.convert_tokens_to_ids(f"<|{lang}|>")
        if lang_token not in t.all_language_tokens:
            raise ValueError(f"language {lang!r} is not a Whisper language code")
        return lang_token

    def prompt(self, lang, task="transcribe"):
        """Whisper's prompt; ``lang`` None: no language token (a model trained without one)."""
        t = self.whisper_tokenizer
        head = [t.sot] if lang is None else [t.sot, self.language_token(lang)]
        return head + [t.transcribe if task == "transcribe" else t.translate, t.no_timestamps]

    # ---- language experts: the route of each row (an expert's index, NO_EXPERT or FUSED)
    @property
    def router(self):
        return getattr(self.model, "lang_router", None)

    def _route(self, routes):
        if self.router is not None:
            if any(r is None for r in routes):
                raise ValueError("a language-expert model decodes with a route per utterance "
                                 "(whisper_inference --route utt2lang or lid)")
            self.router.mode = "route"
            self.router.route = torch.as_tensor(routes, device=self.device)

    @torch.no_grad()
    def encode(self, speech: np.ndarray, route: int = None) -> torch.Tensor:
        """Encoder output (T, D); ``route``: the expert (index) of a language-expert model."""
        self._route([route])
        x = torch.from_numpy(speech).to(self.device)[None]
        enc, _ = self.model.encode(x, torch.tensor([x.shape[1]], device=self.device))
        return enc[0]

    @torch.no_grad()
    def detect_language(self, encoded: torch.Tensor, candidates, route: int = None) -> str:
        """Whisper's language identification: the most probable of ``candidates``' language
        tokens after <|startoftranscript|> (one decoder step). A language-expert model detects
        with ``route`` (NO_EXPERT: the base model; FUSED: the uniform fusion), the route that
        ``encoded`` was computed with."""
        from espnet_lalora.methods.expert_router import NO_EXPERT

        self._route([NO_EXPERT if route is None else route])
        cross = self.decoder.cross_kv(encoded[None])
        sot = torch.tensor([[self.whisper_tokenizer.sot]], device=self.device)
        logits, _ = self.decoder.step(sot, 0, None, cross, 1)
        ids = [self.language_token(lang) for lang in candidates]
        return candidates[int(logits[0, ids].argmax())]

    @torch.no_grad()
    def __call__(self, encoded, prompts, options, routes=None):
        """Decode a batch; ``routes``: each utterance's expert (language-expert models)."""
        from espnet_lalora.decoding import beam_search

        lengths = torch.tensor([e.shape[0] for e in encoded], device=self.device)
        audio = torch.nn.utils.rnn.pad_sequence(encoded, batch_first=True)
        hook = None
        if routes is not None and self.router is not None:
            per_utt = torch.as_tensor(routes, device=self.device)
            hook = lambda utts, group: self._route(  # noqa: E731
                per_utt[utts].repeat_interleave(group))
        return beam_search(self.decoder, audio, lengths, prompts, self.whisper_tokenizer.eot,
                           options, self.suppress, self.blank, rows_hook=hook)

    def to_text(self, result):
        token_int = result.yseq[1:-1] if result.yseq[-1] == self.whisper_tokenizer.eot \
            else result.yseq[1:]
        tokens = self.converter.ids2tokens(token_int)
        return self.espnet_tokenizer.tokens2text(tokens), tokens, token_int
