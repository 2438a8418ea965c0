"""The converted checkpoint against CTranslate2 running the very same model.bin.

Both get identical log-mel features (openai-whisper's, 30 s padded): their own audio padding
differs, which is not what is under test here.
"""

import numpy as np
import pytest
import torch
from conftest import UTTERANCES

ENCODER_TOLERANCE = 3e-3  # max abs difference of encoder outputs (measured 2.7e-4 to 1.1e-3)
LOGPROB_TOLERANCE = 2e-4  # max abs difference of decoder log-probabilities


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


@pytest.mark.parametrize("utt", sorted(UTTERANCES))
def test_same_encoder_output_and_greedy_tokens(speech, whisper_base, ct2_model, utt):
    import ctranslate2

    audio, lang = speech[utt]
    mel = _features(audio)
    features = ctranslate2.StorageView.from_array(np.ascontiguousarray(mel.numpy()))

    with torch.no_grad():
        ours = whisper_base.encoder(mel)[0].numpy()
    theirs = np.array(ct2_model.encode(features, to_cpu=True))[0]
    assert ours.shape == theirs.shape == (1500, 512)
    encoder_diff = float(np.abs(ours - theirs).max())
    print(f"{utt}: max |encoder difference| = {encoder_diff:.2e}")
    assert encoder_diff < ENCODER_TOLERANCE

    result, task = _greedy_openai(whisper_base, mel, lang)
    prompt = list(task.initial_tokens)
    suppress = list(task._get_suppress_tokens())
    ct2 = ct2_model.generate(features, [prompt], beam_size=1, suppress_tokens=suppress,
                             suppress_blank=True, return_logits_vocab=True, max_length=224)[0]
    ct2_tokens = [t for t in ct2.sequences_ids[0] if t < task.tokenizer.eot]
    print(f"{utt}: {result.text!r}")
    assert ct2_tokens == result.tokens, (ct2_tokens, result.tokens)
    assert len(result.tokens) > 3

    # Decoder: teacher-force the greedy tokens and compare log-probabilities at every step.
    tokens = torch.tensor([prompt + result.tokens])
    with torch.no_grad():
        logits = whisper_base.decoder(tokens, torch.from_numpy(theirs)[None])[0]
    steps = len(result.tokens)
    ct2_logits = torch.tensor(np.stack([np.array(x) for x in ct2.logits[0][:steps]]))
    ct2_logits = ct2_logits.reshape(steps, -1)
    ours_steps = logits[len(prompt) - 1 : len(prompt) - 1 + steps].clone()
    suppressed = ct2_logits < -1e30  # CTranslate2 writes -FLT_MAX where a token is suppressed
    ours_steps[suppressed] = -float("inf")
    ct2_logits[suppressed] = -float("inf")
    finite = ~suppressed
    diff = (ours_steps.log_softmax(-1) - ct2_logits.log_softmax(-1))[finite].abs().max().item()
    print(f"{utt}: max |decoder log-prob difference| = {diff:.2e} over {steps} steps")
    assert diff < LOGPROB_TOLERANCE


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
