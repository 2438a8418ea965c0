"""The converted checkpoint against CTranslate2 running the very same model.bin.

Both get identical log-mel features (openai-whisper's, 30 s padded): their own audio padding
differs, which is not what is under test here.
"""

import numpy as np
import pytest
import torch
from conftest import UTTERANCES

# Max abs differences allowed; README's "Whisper weights offline" states the same figures (checked
# below). Measured with 1 to 8 CPU threads, which change the sums' order: encoder outputs 2.3e-4
# to 1.0e-3, decoder log-probabilities 2.9e-5 to 5.1e-5; these allow 1.5 times the largest.
ENCODER_TOLERANCE = 1.5e-3
LOGPROB_TOLERANCE = 7.5e-5


@pytest.fixture(scope="module")
def ct2_model():
    import ctranslate2

    from espnet_lalora.whisper_weights import prepare_ct2_model

    return ctranslate2.models.Whisper(str(prepare_ct2_model("base")), device="cpu",
                                      compute_type="float32")


def _features(audio):
    import whisper

    return whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.from_numpy(audio)))[None]


def _greedy_openai(model, mel, lang):
    import whisper

    options = whisper.DecodingOptions(language=lang, without_timestamps=True, fp16=False,
                                      temperature=0.0)
    task = whisper.decoding.DecodingTask(model, options)
    result = whisper.decode(model, mel, options)[0]
    return result, task


def compare_with_ct2(model, ct2_model, audio, lang):
    """Run openai-whisper ``model`` and CTranslate2 on the same features: the max abs differences
    of encoder outputs and of decoder log-probabilities (teacher-forced on openai-whisper's greedy
    tokens), and both greedy token sequences."""
    import ctranslate2

    mel = _features(audio)
    features = ctranslate2.StorageView.from_array(np.ascontiguousarray(mel.numpy()))
    with torch.no_grad():
        ours = model.encoder(mel)[0].numpy()
    theirs = np.array(ct2_model.encode(features, to_cpu=True))[0]
    assert ours.shape == theirs.shape == (1500, 512)
    encoder_diff = float(np.abs(ours - theirs).max())

    result, task = _greedy_openai(model, mel, lang)
    prompt = list(task.initial_tokens)
    suppress = list(task._get_suppress_tokens())
    ct2 = ct2_model.generate(features, [prompt], beam_size=1, suppress_tokens=suppress,
                             suppress_blank=True, return_logits_vocab=True, max_length=224)[0]
    ct2_tokens = [t for t in ct2.sequences_ids[0] if t < task.tokenizer.eot]

    # Decoder: teacher-force the greedy tokens on CTranslate2's encoder output and compare
    # log-probabilities at every step.
    tokens = torch.tensor([prompt + result.tokens])
    with torch.no_grad():
        logits = model.decoder(tokens, torch.from_numpy(theirs)[None])[0]
    steps = min(len(result.tokens), len(ct2.logits[0]))
    ct2_logits = torch.tensor(np.stack([np.array(x) for x in ct2.logits[0][:steps]]))
    ct2_logits = ct2_logits.reshape(steps, -1)
    ours_steps = logits[len(prompt) - 1 : len(prompt) - 1 + steps].clone()
    suppressed = ct2_logits < -1e30  # CTranslate2 writes -FLT_MAX where a token is suppressed
    ours_steps[suppressed] = -float("inf")
    ct2_logits[suppressed] = -float("inf")
    diff = (ours_steps.log_softmax(-1) - ct2_logits.log_softmax(-1))[~suppressed].abs().max()
    return dict(encoder_diff=encoder_diff, logprob_diff=diff.item(), steps=steps,
                tokens=result.tokens, ct2_tokens=ct2_tokens, text=result.text)


@pytest.mark.parametrize("utt", sorted(UTTERANCES))
def test_same_encoder_output_and_greedy_tokens(speech, whisper_base, ct2_model, utt):
    audio, lang = speech[utt]
    found = compare_with_ct2(whisper_base, ct2_model, audio, lang)
    print(f"{utt}: {found['text']!r}: max |encoder difference| = {found['encoder_diff']:.2e}, "
          f"max |decoder log-prob difference| = {found['logprob_diff']:.2e} "
          f"over {found['steps']} steps")
    assert found["ct2_tokens"] == found["tokens"]
    assert len(found["tokens"]) > 3
    assert found["encoder_diff"] < ENCODER_TOLERANCE
    assert found["logprob_diff"] < LOGPROB_TOLERANCE


def test_readme_states_the_tolerances_tested_here():
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Whisper weights offline", 1)[1].split("\n## ", 1)[0]
    section = " ".join(section.split())  # the figures may wrap across lines
    figure = lambda x: f"{x:.1e}".replace("e-0", "e-")  # noqa: E731  (1.5e-3, as README writes)
    assert f"identical greedy tokens on {len(UTTERANCES)} of {len(UTTERANCES)}" in section
    assert f"encoder outputs within {figure(ENCODER_TOLERANCE)} (max abs)" in section
    assert f"decoder log-probabilities within {figure(LOGPROB_TOLERANCE)}" in section


def test_ct2_to_openai_whisper_and_back_gives_the_same_tensors(tmp_path):
    """The installed CTranslate2 base model -> openai-whisper checkpoint -> CTranslate2 folder
    (stage 9's writer): every variable of the original comes back bit for bit, and
    faster-whisper loads the folder."""
    from faster_whisper import WhisperModel

    from espnet_lalora.ct2_whisper import (ct2_to_whisper_checkpoint, read_ct2_model,
                                           write_ct2_model)
    from espnet_lalora.whisper_weights import prepare_ct2_model

    template = prepare_ct2_model("base")
    spec, original = read_ct2_model(template / "model.bin")
    checkpoint = ct2_to_whisper_checkpoint(original, dtype=torch.float16)
    out = write_ct2_model(checkpoint, tmp_path / "ct2", template)
    spec_again, again = read_ct2_model(out / "model.bin")
    assert spec_again == spec == "WhisperSpec"
    for name, tensor in original.items():
        assert again[name].dtype == tensor.dtype and torch.equal(again[name], tensor), name
    assert all(again[n].dim() == 0 for n in set(again) - set(original))  # newer spec flags only
    model = WhisperModel(str(out), device="cpu", compute_type="float32")
    assert model.model.is_multilingual and model.model.n_mels == 80
