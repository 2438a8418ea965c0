"""The kv-cached batched decoder against the real counterparts: openai-whisper's greedy decoding,
ESPnet's beam search, and itself one utterance at a time."""

from pathlib import Path

import pytest
import torch
from conftest import UTTERANCES, build_espnet_model

from espnet_lalora.decoding import DecodeOptions

ROOT = Path(__file__).resolve().parents[1]


def transcriber_for(token_list, pad):
    from espnet_lalora.transcriber import WhisperTranscriber

    model = build_espnet_model(ROOT / "conf" / "whisper_base.yaml", token_list, "--encoder_conf",
                               f"do_pad_trim={'true' if pad else 'false'}")
    return WhisperTranscriber(model.eval())


@pytest.fixture(scope="module")
def padded(token_list):
    return transcriber_for(token_list, pad=True)


@pytest.fixture(scope="module")
def unpadded(token_list):
    return transcriber_for(token_list, pad=False)


@pytest.mark.parametrize("utt", sorted(UTTERANCES))
def test_greedy_equals_openai_whisper_greedy(speech, whisper_base, padded, utt):
    import whisper

    audio, lang = speech[utt]
    mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.from_numpy(audio)))[None]
    reference = whisper.decode(whisper_base, mel, whisper.DecodingOptions(
        language=lang, without_timestamps=True, fp16=False, temperature=0.0))[0]
    options = DecodeOptions(beam_size=1, maxlenratio=1.0, whisper_filters=True,
                            repetition_guard=0)
    ours = padded([padded.encode(audio)], [padded.prompt(lang)], options)[0]
    assert ours.tokens == reference.tokens, (ours.tokens, reference.tokens)


def test_beam_search_equals_espnet_beam_search(speech, unpadded, token_list, tmp_path):
    import yaml
    from espnet.nets.batch_beam_search import BatchBeamSearch
    from espnet.nets.scorers.length_bonus import LengthBonus

    model = unpadded.model
    beam, ratio = 5, 0.5
    espnet_search = BatchBeamSearch(
        scorers={"decoder": model.decoder, "length_bonus": LengthBonus(len(model.token_list))},
        weights={"decoder": 1.0, "length_bonus": 0.0}, beam_size=beam,
        vocab_size=len(model.token_list), sos=model.sos, eos=model.eos,
        token_list=model.token_list, pre_beam_score_key="full").eval()
    options = DecodeOptions(beam_size=beam, maxlenratio=ratio, repetition_guard=0)
    compared = 0
    for utt in ("en1", "ko1", "ja1", "en2"):
        audio, lang = speech[utt]
        encoded = unpadded.encode(audio)
        prompt = unpadded.prompt(lang)
        espnet_search.set_hyp_primer(prompt)
        with torch.no_grad():
            best = espnet_search(x=encoded, maxlenratio=ratio, minlenratio=0.0)[0]
        maxlen = int(ratio * encoded.shape[0])
        if len(best.yseq) > len(prompt) + maxlen:  # ran to the length limit: not a normal end
            continue
        ours = unpadded([encoded], [prompt], options)[0]
        assert ours.yseq == best.yseq.tolist(), utt
        assert abs(ours.score - float(best.score)) < 1e-3
        compared += 1
    print(f"beam 5: identical to ESPnet on {compared} of 4 utterances that end normally")
    assert compared >= 2


def test_batched_decoding_equals_one_by_one(speech, unpadded):
    options = DecodeOptions(beam_size=3, maxlenratio=0.5)
    keys = sorted(UTTERANCES)
    encoded = [unpadded.encode(speech[k][0]) for k in keys]
    prompts = [unpadded.prompt(speech[k][1]) for k in keys]
    together = unpadded(encoded, prompts, options)
    for k, e, p, r in zip(keys, encoded, prompts, together):
        alone = unpadded([e], [p], options)[0]
        assert alone.tokens == r.tokens, k
        assert abs(alone.score - r.score) < 1e-3


def test_repetition_guard_ends_a_loop():
    from espnet_lalora.decoding import _repeats

    assert _repeats([5, 1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3], 4)
    assert not _repeats([5, 1, 2, 3, 1, 2, 3, 1, 2, 3], 4)
    assert _repeats([7, 7, 7, 7], 4) and not _repeats([7, 8, 7, 7, 7], 4)


def test_unmerged_lora_decodes_like_the_merged_model(speech, token_list):
    import copy

    from espnet_lalora.transcriber import WhisperTranscriber
    from espnet_lalora.methods.lora_layer import LoRALinear, merge_lora

    torch.manual_seed(0)
    model = build_espnet_model(ROOT / "conf" / "train_lora.yaml", token_list).eval()
    for module in model.modules():
        if isinstance(module, LoRALinear):
            torch.nn.init.normal_(module.lora_B, std=0.01)
    merged = copy.deepcopy(model)
    merge_lora(merged)
    options = DecodeOptions(beam_size=3, maxlenratio=0.5)
    results = []
    for m in (model, merged):
        t = WhisperTranscriber(m)
        results.append([t([t.encode(speech[k][0])], [t.prompt(speech[k][1])], options)[0].tokens
                        for k in ("en1", "ko1")])
    assert results[0] == results[1]


@pytest.mark.parametrize("extra,message", [
    (["--lang", "ja", "--beam_size", "0"], "--beam_size and --batch_size must be at least 1"),
    (["--lang", "ja", "--maxlenratio", "0"], "--maxlenratio must be > 0"),
    (["--lang", "jp"], "language 'jp' is not a Whisper language code"),
    ([], "give --utt2lang or --lang"),
])
def test_decoder_rejects_bad_options(tmp_path, extra, message):
    import subprocess
    import sys

    (tmp_path / "wav.scp").write_text("a-1 /nowhere.wav\n")
    result = subprocess.run([sys.executable, "-m", "espnet_lalora.bin.whisper_inference",
                             "--asr_train_config", "none.yaml", "--output_dir", str(tmp_path / "o"),
                             "--data_path_and_name_and_type", f"{tmp_path / 'wav.scp'},speech,sound",
                             *extra], capture_output=True, text=True)
    assert result.returncode != 0 and message in result.stderr, result.stderr
    assert not (tmp_path / "o").exists()
