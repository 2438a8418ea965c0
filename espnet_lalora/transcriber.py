"""An ESPnet Whisper model with this project's kv-cached, batched beam search
(:mod:`espnet_lalora.decoding`): ``load_model`` and ``WhisperTranscriber``, used by stage 10's
``whisper_inference``, ``check_exports`` and the benchmarks."""

import numpy as np
import torch

from espnet_lalora.quiet import quiet_espnet_imports


def load_model(config, model_file, device):
    quiet_espnet_imports()
    from espnet_lalora.espnet_plugin import ASRTask

    model_file = None if model_file in (None, "none", "None") else model_file
    model, _ = ASRTask.build_model_from_file(config, model_file, device)
    return model.eval()


class WhisperTranscriber:
    """An ESPnet Whisper model plus this project's decoder; ``__call__`` decodes a batch."""

    def __init__(self, model, device="cpu"):
        import whisper.tokenizer
        from espnet2.text.build_tokenizer import build_tokenizer
        from espnet2.text.whisper_token_id_converter import OpenAIWhisperTokenIDConverter

        from espnet_lalora.decoding import CachedWhisperDecoder, whisper_suppress_tokens

        self.model, self.device = model, device
        self.decoder = CachedWhisperDecoder(model.decoder.decoders)
        self.whisper_tokenizer = whisper.tokenizer.get_tokenizer(True)
        self.espnet_tokenizer = build_tokenizer(token_type="whisper_multilingual",
                                                bpemodel="whisper_multilingual")
        self.converter = OpenAIWhisperTokenIDConverter(model_type="whisper_multilingual")
        self.suppress = whisper_suppress_tokens(self.whisper_tokenizer)
        self.blank = self.whisper_tokenizer.encode(" ") + [self.whisper_tokenizer.eot]

    def prompt(self, lang, task="transcribe"):
        t = self.whisper_tokenizer
        lang_token = t.tokenizer.convert_tokens_to_ids(f"<|{lang}|>")
        if lang_token not in t.all_language_tokens:
            raise ValueError(f"language {lang!r} is not a Whisper language code")
        return [t.sot, lang_token, t.transcribe if task == "transcribe" else t.translate,
                t.no_timestamps]

    @torch.no_grad()
    def encode(self, speech: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(speech).to(self.device)[None]
        enc, _ = self.model.encode(x, torch.tensor([x.shape[1]], device=self.device))
        return enc[0]

    @torch.no_grad()
    def __call__(self, encoded, prompts, options):
        from espnet_lalora.decoding import beam_search

        lengths = torch.tensor([e.shape[0] for e in encoded], device=self.device)
        audio = torch.nn.utils.rnn.pad_sequence(encoded, batch_first=True)
        return beam_search(self.decoder, audio, lengths, prompts, self.whisper_tokenizer.eot,
                           options, self.suppress, self.blank)

    def to_text(self, result):
        token_int = result.yseq[1:-1] if result.yseq[-1] == self.whisper_tokenizer.eot \
            else result.yseq[1:]
        tokens = self.converter.ids2tokens(token_int)
        return self.espnet_tokenizer.tokens2text(tokens), tokens, token_int
