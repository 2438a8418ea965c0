"""Stage 10 through CTranslate2 (``whisper_inference --backend ct2``): a merged model's
CTranslate2 export (stage 9's ``export/ct2``, or the Whisper size's folder for zero-shot) decoded
as faster-whisper decodes it, but a batch at a time.

Per utterance it is faster-whisper's ``WhisperModel.transcribe`` with ``without_timestamps=True``
token for token (tests/test_ct2_backend.py): the same features (log-mel of the utterance, padded
to 30 s with zeros after normalization), the same prompt, CTranslate2's beam search with the same
options. The temperature-0 pass of a batch is one ``generate`` call; an utterance whose result
fails faster-whisper's checks (gzip compression ratio above ``compression_ratio_threshold``: a
loop; average log-probability below ``logprob_threshold``) goes through faster-whisper's own
fallback (sampling at the next temperatures, best of 5). Utterances longer than 30 s go through
faster-whisper's long-form ``transcribe`` (windows of 30 s); the PyTorch decoder trims them.
"""

import os
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

CHUNK_SECONDS = 30


@dataclass
class CT2Options:
    beam_size: int = 5
    patience: float = 1.0
    compute_type: str = "float32"  # or int8 (weights int8, activations quantized per row)
    temperatures: Tuple[float, ...] = (0.0,)  # faster-whisper's fallback: (0.0, 0.2, ..., 1.0)
    compression_ratio_threshold: float = 2.4
    logprob_threshold: float = -1.0
    max_tokens: Optional[int] = None  # a cap on new tokens (None: the 448-token context)
    pad_to_30s: bool = True  # False: the utterance's own length, as a model trained unpadded
    # the PyTorch decoder's repetition guard, applied to the result (CTranslate2 has none): a
    # loop is cut where that decoder would have ended it (decoding.cut_repetition; 0: off)
    repetition_guard: int = 4
    repetition_span: int = 20


def compression_ratio(text: str) -> float:
    """faster-whisper's (and openai-whisper's) loop detector: text bytes / gzip bytes."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data))


def ct2_folder(model_file, config) -> Path:
    """The CTranslate2 folder of what stage 10 decodes: stage 9's ``export/ct2`` beside
    ``export/merged/model.pth``, or for the zero-shot model (no model file) the Whisper size's
    folder from the install step."""
    import yaml

    if model_file in (None, "none", "None"):
        from espnet_lalora.whisper_weights import WhisperWeightsNotFound, prepare_ct2_model

        if not Path(config).is_file():
            raise ValueError(f"--asr_train_config {config}: not found")
        conf = yaml.safe_load(Path(config).read_text())
        try:  # the installed CTranslate2 folder of that size (joined once from its packages)
            return prepare_ct2_model(conf["encoder_conf"].get("whisper_model", "base"),
                                     log=lambda message: print(message, file=sys.stderr))
        except WhisperWeightsNotFound as e:
            raise ValueError(str(e)) from e
    elif (Path(model_file).parent / "experts.yaml").is_file():
        raise ValueError(f"{model_file}: a language-expert bundle routes each utterance to its "
                         "expert, which CTranslate2 cannot run; decode it with --backend pytorch")
    elif Path(model_file).parent.name != "merged":
        raise ValueError(f"{model_file}: stage 9 exports only export/merged to CTranslate2 "
                         "(export/ct2); decode this model with --backend pytorch")
    folder = Path(model_file).parent.parent / "ct2"
    if not (folder / "model.bin").is_file():
        raise ValueError(f"no CTranslate2 model at {folder} (stage 9 writes it next to "
                         "export/merged)")
    return folder


class CT2Transcriber:
    """faster-whisper's model of ``folder``; ``__call__`` decodes a batch of 16-kHz waveforms."""

    def __init__(self, folder, options: CT2Options, device="cpu"):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from faster_whisper import WhisperModel

        threads = int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
        self.whisper = WhisperModel(str(folder), device=device, compute_type=options.compute_type,
                                    cpu_threads=threads)
        self.options = options
        self.hf_tokenizer = self.whisper.hf_tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        # faster-whisper's expansion of "-1": the non-speech and special tokens
        self.suppress = list(get_suppressed_tokens(self.tokenizer("en"), [-1]))

    def transcription_options(self, temperatures):
        """faster-whisper's options of ``transcribe`` for a single window without timestamps."""
        from faster_whisper.transcribe import TranscriptionOptions

        o = self.options
        return TranscriptionOptions(
            beam_size=o.beam_size, best_of=5, patience=o.patience, length_penalty=1,
            repetition_penalty=1, no_repeat_ngram_size=0, log_prob_threshold=o.logprob_threshold,
            no_speech_threshold=None, compression_ratio_threshold=o.compression_ratio_threshold,
            condition_on_previous_text=False, prompt_reset_on_temperature=0.5,
            temperatures=list(temperatures), initial_prompt=None, prefix=None,
            suppress_blank=True, suppress_tokens=self.suppress, without_timestamps=True,
            max_initial_timestamp=1.0, word_timestamps=False, prepend_punctuations="",
            append_punctuations="", multilingual=False, max_new_tokens=o.max_tokens,
            clip_timestamps="0", hallucination_silence_threshold=None, hotwords=None)

    def tokenizer(self, lang):
        from faster_whisper.tokenizer import Tokenizer

        return Tokenizer(self.hf_tokenizer, self.whisper.model.is_multilingual,
                         task="transcribe", language=lang)

    def features(self, audio: np.ndarray, samples: int) -> np.ndarray:
        """faster-whisper's features of a window: the utterance's log-mel (its last frame
        dropped, as ``transcribe`` does), padded with zeros to 3,000 frames. Unpadded
        (``pad_to_30s`` False): the audio padded with silence to ``samples`` (the batch's
        longest), as ESPnet pads a training batch."""
        from faster_whisper.audio import pad_or_trim

        if not self.options.pad_to_30s:
            audio = np.pad(audio, (0, samples - len(audio)))
            return self.whisper.feature_extractor(audio)[..., :-1]
        return pad_or_trim(self.whisper.feature_extractor(audio)[..., :-1])

    def __call__(self, audios: Sequence[np.ndarray], langs: Sequence[str]) -> List[tuple]:
        """(text, token ids, summed log-probability) per utterance; a looping result cut by the
        repetition guard (its score stays the search's, of the whole hypothesis)."""
        from espnet_lalora.decoding import cut_repetition

        o = self.options
        out = []
        for lang, (text, tokens, score) in zip(langs, self._search(audios, langs)):
            cut = cut_repetition(tokens, o.repetition_guard, o.repetition_span)
            if len(cut) < len(tokens):
                text = self.tokenizer(lang).decode(cut).strip()
            out.append((text, cut, score))
        return out

    def _search(self, audios, langs) -> List[tuple]:
        import ctranslate2

        out = [None] * len(audios)
        short = [i for i, a in enumerate(audios) if len(a) <= CHUNK_SECONDS * 16000 - 160]
        for i in set(range(len(audios))) - set(short):
            out[i] = self._long(audios[i], langs[i])
        if not short:
            return out
        tokenizers = {lang: self.tokenizer(lang) for lang in set(langs)}
        prompts = [self.whisper.get_prompt(tokenizers[langs[i]], [], without_timestamps=True)
                   for i in short]
        longest = max(len(audios[i]) for i in short)
        features = np.stack([self.features(audios[i], longest) for i in short])
        encoded = self.whisper.model.encode(ctranslate2.StorageView.from_array(features))
        o, first = self.options, self.options.temperatures[0]
        sampling = {"beam_size": 1, "num_hypotheses": 5, "sampling_topk": 0,
                    "sampling_temperature": first} if first > 0 else {
                    "beam_size": o.beam_size, "patience": o.patience}
        max_length = self.whisper.max_length if o.max_tokens is None else min(
            self.whisper.max_length, len(prompts[0]) + o.max_tokens)
        results = self.whisper.model.generate(
            encoded, prompts, length_penalty=1, max_length=max_length,
            return_scores=True, suppress_blank=True, suppress_tokens=self.suppress, **sampling)
        retry = []
        for pos, (i, result) in enumerate(zip(short, results)):
            tokens = result.sequences_ids[0]
            total = result.scores[0] * len(tokens)  # CTranslate2 divides by the length
            text = tokenizers[langs[i]].decode(tokens).strip()
            average = total / (len(tokens) + 1)
            if len(o.temperatures) > 1 and (
                    compression_ratio(text) > o.compression_ratio_threshold
                    or average < o.logprob_threshold):
                retry.append((pos, i))
            out[i] = (text, tokens, total)
        for pos, i in retry:  # faster-whisper's own fallback, from temperature 0 again
            result, average, _, _ = self.whisper.generate_with_fallback(
                self.whisper.encode(features[pos]), prompts[pos], tokenizers[langs[i]],
                self.transcription_options(o.temperatures))
            tokens = result.sequences_ids[0]
            out[i] = (tokenizers[langs[i]].decode(tokens).strip(), tokens,
                      average * (len(tokens) + 1))
        return out

    def _long(self, audio, lang):
        o = self.options
        segments, _ = self.whisper.transcribe(
            audio, language=lang, beam_size=o.beam_size, patience=o.patience,
            temperature=list(o.temperatures), without_timestamps=True,
            condition_on_previous_text=False, no_speech_threshold=None,
            compression_ratio_threshold=o.compression_ratio_threshold,
            log_prob_threshold=o.logprob_threshold, suppress_tokens=[-1],
            max_new_tokens=o.max_tokens)
        segments = list(segments)
        tokens = [t for s in segments for t in s.tokens]
        total = sum(s.avg_logprob * (len(s.tokens) + 1) for s in segments)
        return " ".join(s.text.strip() for s in segments).strip(), tokens, total

    def token_strings(self, ids) -> List[str]:
        """Token names; the timestamp tokens, which the CTranslate2 folders' tokenizer.json
        lacks (a model that emits one anyway: e.g. an untrained one), as openai-whisper names
        them."""
        first_timestamp = self.hf_tokenizer.token_to_id("<|notimestamps|>") + 1
        return [self.hf_tokenizer.id_to_token(i) or f"<|{(i - first_timestamp) * 0.02:.2f}|>"
                for i in ids]
