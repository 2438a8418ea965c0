"""Every Whisper family on openai-whisper 20230308 (espnet_lalora.whisper_sizes): the v3 token
ids and mel bins, ESPnet's encoder on 128 bins, and this project's decoder token for token
against openai-whisper's own decode on randomly initialized v2-, v3- and turbo-shaped models."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import build_espnet_model
from whisper_shapes import SHAPES, random_checkpoint

from espnet_lalora import whisper_sizes
from espnet_lalora.decoding import DecodeOptions

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="module")
def forget_loaded_models():
    yield
    whisper_sizes._loaded.clear()  # the next file's tokenizers follow its own models


def token_list_for(languages: int, path: Path) -> list:
    """Stage 5's token list of a family."""
    subprocess.run([sys.executable, "-m", "espnet_lalora.bin.whisper_token_list", "--languages",
                    str(languages), "--output", str(path)], check=True)
    return path.read_text(encoding="utf-8").splitlines()


def test_v3_token_list_has_cantonese_and_moves_the_later_ids(tmp_path, token_list):
    """openai-whisper's current release (and the v3 checkpoints' generation config): 51,866
    tokens, <|yue|> 50358, <|transcribe|> 50360, <|notimestamps|> 50364, timestamps from 50365
    to <|30.00|>; v1/v2's is ESPnet's own export, line for line."""
    v2, v3 = token_list_for(99, tmp_path / "v2.txt"), token_list_for(100, tmp_path / "v3.txt")
    assert v2 == token_list.read_text(encoding="utf-8").splitlines()  # whisper_export_vocabulary
    assert (len(v2), len(v3)) == (51865, 51866)
    assert v3[:50358] == v2[:50358] and v3[50359:] == v2[50358:]
    assert (v3[50358], v3[50360], v3[50364], v3[50365], v3[-1]) == (
        "<|yue|>", "<|transcribe|>", "<|notimestamps|>", "<|0.00|>", "<|30.00|>")
    assert (v2[50359], v2[50363]) == ("<|transcribe|>", "<|notimestamps|>")


def test_sizes_name_every_family_and_refuse_english_only():
    assert whisper_sizes.size_of("large").n_mels == 128  # "large" is large-v3, as today
    assert whisper_sizes.size_of("turbo").decoder_layers == 4
    assert whisper_sizes.size_of("large-v2").num_languages == 99
    assert whisper_sizes.size_of("large-v3").num_languages == 100
    with pytest.raises(ValueError, match="English-only .* use 'base'"):
        whisper_sizes.size_of("base.en")
    run = subprocess.run([sys.executable, "-m", "espnet_lalora.bin.stamp", "whisper-languages",
                          "small.en"], capture_output=True, text=True)
    assert run.returncode != 0 and "--whisper_model small.en: Whisper 'small.en' is English-only" \
        in run.stderr


@pytest.fixture(scope="module", params=sorted(SHAPES))
def shaped(request, tmp_path_factory):
    """(name, openai-whisper model, ESPnet model with this project's transcriber) of a random
    model of one family, loaded by name from $ESPNET_LALORA_WHISPER_DIR."""
    import whisper

    from espnet_lalora.transcriber import WhisperTranscriber

    name = request.param
    root = tmp_path_factory.mktemp(name)
    random_checkpoint(name, root / f"{name}.pt")
    languages = whisper_sizes.num_languages(SHAPES[name][1])
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ESPNET_LALORA_WHISPER_DIR", str(root))
        mp.setenv("ESPNET_LALORA_WHISPER_LANGUAGES", str(languages))
        tokens = root / "tokens.txt"
        token_list_for(languages, tokens)
        config = root / "config.yaml"
        config.write_text((ROOT / "conf/whisper_base.yaml").read_text().replace(
            "whisper_model: base", f"whisper_model: {name}"))
        model = build_espnet_model(config, tokens, "--encoder_conf", "do_pad_trim=true").eval()
        reference = whisper.load_model(name, device="cpu").float().eval()
        yield name, reference, WhisperTranscriber(model, fused_attention=False)


def test_espnet_encoder_reads_the_models_mel_bins(shaped, speech):
    import whisper

    name, reference, ours = shaped
    audio = torch.from_numpy(speech["en1"][0])
    n_mels = SHAPES[name][0]
    mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(audio), n_mels=n_mels)
    assert mel.shape[0] == n_mels
    with torch.no_grad():
        expected = reference.encoder(mel[None])[0]
        got = ours.encode(speech["en1"][0])
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=2e-4), (got - expected).abs().max()


@pytest.mark.parametrize("beam", [1, 5])
def test_decoder_equals_openai_whisper_on_every_family(shaped, speech, beam):
    """Greedy and beam 5 (Whisper's ranking), the language given: the same tokens as
    whisper.decode on the same encoder output, Japanese and Korean prompts included."""
    import whisper

    name, reference, ours = shaped
    lengths = []
    for utt in ("en1", "ja1", "ko1"):
        audio, lang = speech[utt]
        with torch.no_grad():
            features = reference.encoder(whisper.log_mel_spectrogram(
                whisper.pad_or_trim(torch.from_numpy(audio)), n_mels=SHAPES[name][0])[None])
        expected = whisper.decode(reference, features, whisper.DecodingOptions(
            language=lang, without_timestamps=True, fp16=False, temperature=0.0,
            beam_size=None if beam == 1 else beam, sample_len=40))[0]
        options = DecodeOptions(beam_size=beam, ranking="whisper", whisper_filters=True,
                                maxlenratio=1.0, max_tokens=40, repetition_guard=0)
        prompt = ours.prompt(lang)
        assert prompt[1] == reference_prompt(lang, name)
        got = ours([features[0]], [prompt], options)[0]
        assert got.tokens == expected.tokens, (name, utt, got.tokens, expected.tokens)
        lengths.append(len(got.tokens))
    assert max(lengths) >= 5, lengths  # not a model that ends at once


def reference_prompt(lang: str, name: str) -> int:
    """The language token id: openai-whisper's language order, shifted by nothing (all 99
    languages precede yue)."""
    import whisper.tokenizer

    return 50259 + list(whisper.tokenizer.LANGUAGES).index(lang)


def test_ct2_export_of_every_family_scores_as_openai_whisper(shaped, speech, tmp_path):
    """write_ct2_model (stage 9) on each family: faster-whisper loads it with the model's mel
    bins and special tokens, and CTranslate2's log-probabilities of the first token after the
    prompt are openai-whisper's on the same features (within 2e-3; float32 both)."""
    import ctranslate2
    import whisper
    from faster_whisper import WhisperModel

    from espnet_lalora.ct2_whisper import write_ct2_model
    from espnet_lalora.whisper_weights import ct2_template

    name, reference, _ = shaped
    checkpoint = {"dims": vars(reference.dims), "model_state_dict": reference.state_dict()}
    folder = write_ct2_model(checkpoint, tmp_path / "ct2", ct2_template(reference.dims.n_vocab))
    fw = WhisperModel(str(folder), device="cpu", compute_type="float32")
    assert fw.feature_extractor.mel_filters.shape[0] == reference.dims.n_mels
    for utt in ("en1", "ja1"):
        audio, lang = speech[utt]
        tokenizer = whisper.tokenizer.get_tokenizer(True, language=lang,
                                                    num_languages=reference.num_languages)
        prompt = list(tokenizer.sot_sequence_including_notimestamps)
        assert [fw.hf_tokenizer.token_to_id(t) for t in (f"<|{lang}|>", "<|transcribe|>",
                                                         "<|notimestamps|>")] == prompt[1:]
        mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.from_numpy(audio)),
                                          n_mels=reference.dims.n_mels)[None]
        with torch.no_grad():
            logits = reference.logits(torch.tensor([prompt]), reference.encoder(mel))[0, -1]
        expected = torch.log_softmax(logits, -1)
        result = fw.model.generate(ctranslate2.StorageView.from_array(mel.numpy()), [prompt],
                                   beam_size=1, max_length=4, return_logits_vocab=True,
                                   suppress_blank=False, suppress_tokens=[])[0]
        got = torch.log_softmax(torch.tensor(np.asarray(result.logits[0][0])), -1)
        assert got.shape == expected.shape
        assert (got - expected).abs().max() < 2e-3, (name, utt, (got - expected).abs().max())
        assert result.sequences_ids[0][0] == int(expected.argmax())
