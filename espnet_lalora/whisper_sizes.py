"""Every Whisper size by name, and the v3 family on the openai-whisper release ESPnet works with.

ESPnet 202511's Whisper tokenizer and token-id converter use the Hugging Face tokenizer API of
openai-whisper <= 20230308 (``tokenizer.tokenizer.tokenize``, ``add_special_tokens``); later
releases moved to tiktoken and break them (``AttributeError: 'Tokenizer' object has no attribute
'tokenizer'``). So the install keeps 20230308, and this module teaches it what the current
release knows (openai-whisper 20250625 is the reference for each value):

- the names ``large-v3``, ``large-v3-turbo`` and ``turbo``, and ``large`` meaning large-v3, with
  their official checkpoints (SHA-256 in the URL) and alignment heads;
- the 128-bin mel filterbank of v3 (librosa's slaney filters, as whisper's own asset is made);
- a tokenizer per language count: v3 adds Cantonese (``<|yue|>``, the 100th language), so
  every special token after the language tokens moves up by one and the vocabulary is 51,866;
- ``Whisper.is_multilingual`` for a 51,866-token model, and ``Whisper.num_languages``.

Which language count the tokenizer takes where no model is at hand (ESPnet builds tokenizers
from the name ``whisper_multilingual`` alone): ``$ESPNET_LALORA_WHISPER_LANGUAGES`` (the recipe
driver sets it from the model it trains), else that of the last model loaded in the process,
else 99. A model whose count differs from the variable is refused when it loads.
"""

import functools
import os
from dataclasses import dataclass

# Official checkpoints that openai-whisper 20230308 does not list (as its current release does).
URLS = {
    "large-v3": "https://openaipublic.azureedge.net/main/whisper/models/e5b1a55b89c1367dacf97e3e19bfd829a01529dbfdeefa8caeb59b3f1b81dadb/large-v3.pt",
    "large-v3-turbo": "https://openaipublic.azureedge.net/main/whisper/models/aff26ae408abcba5fbf8813c21e62b0941638c5f6eebfb145be0c9839262a19a/large-v3-turbo.pt",
}
ALIGNMENT_HEADS = {
    "large-v3": b"ABzY8gWO1E0{>%R7(9S+Kn!D~%ngiGaR?*L!iJG9p-nab0JQ=-{D1-g00",
    "large-v3-turbo": b"ABzY8j^C+e0{>%RARaKHP%t(lGR*)0g!tONPyhe`",
}
ALIASES = {"large": "large-v3", "turbo": "large-v3-turbo"}  # the current release's meaning
LANGUAGES_V3 = {"yue": "cantonese"}  # appended after the 99 of v1/v2
ENV_LANGUAGES = "ESPNET_LALORA_WHISPER_LANGUAGES"


@dataclass(frozen=True)
class Size:
    n_mels: int
    n_vocab: int
    width: int
    heads: int
    encoder_layers: int
    decoder_layers: int
    n_audio_ctx: int = 1500
    n_text_ctx: int = 448

    @property
    def num_languages(self) -> int:
        return num_languages(self.n_vocab)

    def dims(self) -> dict:
        """openai-whisper's ``ModelDimensions`` fields."""
        return dict(n_mels=self.n_mels, n_audio_ctx=self.n_audio_ctx, n_audio_state=self.width,
                    n_audio_head=self.heads, n_audio_layer=self.encoder_layers,
                    n_vocab=self.n_vocab, n_text_ctx=self.n_text_ctx, n_text_state=self.width,
                    n_text_head=self.heads, n_text_layer=self.decoder_layers)


V2, V3 = (80, 51865), (128, 51866)
SIZES = {
    "tiny": Size(*V2, 384, 6, 4, 4),
    "base": Size(*V2, 512, 8, 6, 6),
    "small": Size(*V2, 768, 12, 12, 12),
    "medium": Size(*V2, 1024, 16, 24, 24),
    "large-v1": Size(*V2, 1280, 20, 32, 32),
    "large-v2": Size(*V2, 1280, 20, 32, 32),
    "large-v3": Size(*V3, 1280, 20, 32, 32),
    "large-v3-turbo": Size(*V3, 1280, 20, 32, 4),  # large-v3 with a 4-layer decoder
}
ENGLISH_ONLY = ("tiny.en", "base.en", "small.en", "medium.en")


def canonical(name: str) -> str:
    return ALIASES.get(name, name)


def size_of(name: str) -> Size:
    """The dimensions of a multilingual size by name (aliases too); a clear error otherwise."""
    if name in ENGLISH_ONLY:
        raise ValueError(english_only_message(name))
    if canonical(name) not in SIZES:
        raise ValueError(f"unknown Whisper size {name!r}; known: "
                         f"{', '.join(list(SIZES) + list(ALIASES))}")
    return SIZES[canonical(name)]


def english_only_message(name: str) -> str:
    return (f"Whisper {name!r} is English-only (51,864 tokens, no language token): these recipes "
            f"are multilingual and prompt every utterance with its language; use "
            f"{name.removesuffix('.en')!r}, the multilingual model of the same size")


def num_languages(n_vocab: int) -> int:
    """Languages of a multilingual vocabulary: 51,865 tokens hold 99, 51,866 hold 100."""
    return n_vocab - 51766


def _env_languages():
    """``$ESPNET_LALORA_WHISPER_LANGUAGES`` as a number, None when unset."""
    env = os.environ.get(ENV_LANGUAGES)
    if not env:
        return None
    try:
        return int(env)
    except ValueError:
        raise ValueError(f"${ENV_LANGUAGES}={env!r}: give 99 (Whisper v1/v2) or 100 (v3)")


def languages_in_use() -> int:
    env = _env_languages()
    return _loaded.get("num_languages", 99) if env is None else env


_loaded = {}


def model_loaded(model, name: str):
    """Remember the language count of a model just loaded; refuse one that contradicts
    ``$ESPNET_LALORA_WHISPER_LANGUAGES``."""
    count = num_languages(model.dims.n_vocab)
    env = _env_languages()
    if env is not None and env != count:
        raise ValueError(f"Whisper model {name!r} has {count} languages ({model.dims.n_vocab} "
                         f"tokens), but ${ENV_LANGUAGES}={env}: the token list and tokenizer were "
                         f"made for another Whisper family; unset the variable or redo stage 5")
    _loaded["num_languages"] = count


@functools.lru_cache(maxsize=None)
def _mel_128():
    import librosa
    import numpy as np

    return librosa.filters.mel(sr=16000, n_fft=400, n_mels=128).astype(np.float32)


def extend_whisper(whisper):
    """Teach openai-whisper 20230308 the v3 family (see the module doc); idempotent."""
    import torch

    if getattr(whisper, "_espnet_lalora_sizes", False):
        return
    for name, url in URLS.items():
        whisper._MODELS.setdefault(name, url)
        getattr(whisper, "_ALIGNMENT_HEADS", {}).setdefault(name, ALIGNMENT_HEADS[name])
    for alias, name in ALIASES.items():
        whisper._MODELS[alias] = whisper._MODELS[name]
        if hasattr(whisper, "_ALIGNMENT_HEADS"):
            whisper._ALIGNMENT_HEADS[alias] = whisper._ALIGNMENT_HEADS[name]

    audio = whisper.audio
    mel_80 = audio.mel_filters

    def mel_filters(device, n_mels: int = audio.N_MELS) -> torch.Tensor:
        if n_mels == 128:
            return torch.from_numpy(_mel_128()).to(device)
        return mel_80(device, n_mels)

    audio.mel_filters = mel_filters

    model = whisper.model.Whisper
    model.is_multilingual = property(lambda self: self.dims.n_vocab >= 51865)
    model.num_languages = property(lambda self: num_languages(self.dims.n_vocab))

    tokenizer = whisper.tokenizer
    for code, language in LANGUAGES_V3.items():
        tokenizer.LANGUAGES.setdefault(code, language)
        tokenizer.TO_LANGUAGE_CODE.setdefault(language, code)
    build_tokenizer, get_tokenizer = _tokenizer_functions(tokenizer)
    tokenizer.build_tokenizer = build_tokenizer
    tokenizer.get_tokenizer = get_tokenizer
    for module in (whisper.decoding, whisper.transcribe):  # they imported it by name
        module.get_tokenizer = get_tokenizer
    whisper._espnet_lalora_sizes = True


def _tokenizer_functions(tokenizer):
    """openai-whisper 20230308's ``build_tokenizer`` and ``get_tokenizer`` with the number of
    language tokens as a parameter (None: :func:`languages_in_use`)."""

    @functools.lru_cache(maxsize=None)
    def build_tokenizer(name: str = "gpt2", num_languages: int = 99):
        from transformers import GPT2TokenizerFast

        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        hf = GPT2TokenizerFast.from_pretrained(os.path.join(os.path.dirname(tokenizer.__file__),
                                                            "assets", name))
        languages = list(tokenizer.LANGUAGES)[:num_languages]
        specials = ["<|startoftranscript|>", *[f"<|{code}|>" for code in languages],
                    "<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>",
                    "<|nospeech|>", "<|notimestamps|>"]
        hf.add_special_tokens(dict(additional_special_tokens=specials))
        return hf

    @functools.lru_cache(maxsize=None)
    def cached(multilingual, task, language, num_languages):
        languages = tuple(tokenizer.LANGUAGES)[:num_languages]
        if language is not None:
            language = language.lower()
            if language not in languages:
                code = tokenizer.TO_LANGUAGE_CODE.get(language)
                if code not in languages:
                    raise ValueError(f"Unsupported language: {language} (this Whisper knows "
                                     f"{num_languages} languages)")
                language = code
        if multilingual:
            name, task, language = "multilingual", task or "transcribe", language or "en"
        else:
            name, task, language = "gpt2", None, None
        hf = build_tokenizer(name, num_languages if multilingual else 99)
        special = hf.all_special_ids
        sot, translate, transcribe = special[1], special[-6], special[-5]
        sequence = [sot]
        if language is not None:
            sequence.append(sot + 1 + languages.index(language))
        if task is not None:
            sequence.append(transcribe if task == "transcribe" else translate)
        return tokenizer.Tokenizer(tokenizer=hf, language=language, sot_sequence=tuple(sequence))

    def get_tokenizer(multilingual: bool, *, task=None, language=None, num_languages=None):
        return cached(multilingual, task, language,
                      languages_in_use() if num_languages is None else num_languages)

    return build_tokenizer, get_tokenizer
