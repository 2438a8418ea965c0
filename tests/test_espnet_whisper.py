"""ESPnet's own Whisper encoder and decoder, built from an ESPnet config, on the offline weights."""

from pathlib import Path

import pytest
import torch
from conftest import build_espnet_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def espnet_model(token_list):
    return build_espnet_model(ROOT / "conf" / "whisper_base.yaml", token_list).eval()


def test_token_list_is_whisper_multilingual(token_list):
    tokens = token_list.read_text(encoding="utf-8").splitlines()
    assert len(tokens) == 51865
    assert "<|startoftranscript|>" in tokens and "<|ko|>" in tokens


def test_espnet_encoder_matches_openai_whisper(speech, whisper_base, espnet_model):
    import whisper

    # openai-whisper's encoder takes 30 s only: both get the same 30-s padded waveform, from
    # which ESPnet computes Whisper's log-mel itself.
    audio = whisper.pad_or_trim(torch.from_numpy(speech["ko1"][0]))[None]
    with torch.no_grad():
        ours, lengths = espnet_model.encode(audio, torch.tensor([audio.shape[1]]))
        reference = whisper_base.encoder(whisper.log_mel_spectrogram(audio[0])[None])
    n = int(lengths[0])
    assert n == 1500
    diff = (ours[0, :n] - reference[0, :n]).abs().max().item()
    print(f"max |ESPnet encoder - openai-whisper encoder| = {diff:.2e} over {n} frames")
    assert diff < 1e-4


def test_espnet_decoder_matches_openai_whisper(whisper_base, espnet_model):
    import whisper

    tokenizer = whisper.tokenizer.get_tokenizer(True, language="ko", task="transcribe")
    tokens = torch.tensor([list(tokenizer.sot_sequence_including_notimestamps)
                           + tokenizer.encode(" 오늘은 날씨가 맑습니다")])
    memory = torch.randn(1, 150, 512)
    with torch.no_grad():
        ours, _ = espnet_model.decoder(memory, torch.tensor([150]), tokens,
                                       torch.tensor([tokens.shape[1]]))
        reference = whisper_base.decoder(tokens, memory)
    diff = (ours - reference).abs().max().item()
    print(f"max |ESPnet decoder - openai-whisper decoder| logits = {diff:.2e}")
    assert diff < 1e-3
