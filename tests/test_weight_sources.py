"""Whisper weights given as a path (espnet_lalora.whisper_weights.register_source): a Hugging Face
transformers folder and a CTranslate2 folder, each converted to openai-whisper's checkpoint and
checked against its own library on the same input. The inputs are random models with the real
layouts of large-v2, large-v3 and turbo at width 64, written by transformers' ``save_pretrained``
and by CTranslate2's own converter (``TransformersConverter``) from that folder."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from whisper_shapes import SHAPES

from espnet_lalora import whisper_sizes
from espnet_lalora import whisper_weights as ww

ROOT = Path(__file__).resolve().parents[1]
WIDTH, HEADS = 64, 2
# Max abs differences allowed, float32 everywhere. Measured (2 CPU threads): transformers logits
# 1.9e-6 to 2.3e-6 (logits up to 4.9); CTranslate2 encoder outputs 4.3e-6 to 5.5e-6,
# log-probabilities 2.9e-6 to 3.8e-6 (int8 weights, dequantized alike on both sides: see the
# test's print). A wrong name mapping gives differences of order 1.
HF_LOGIT_TOLERANCE = 1e-4
CT2_ENCODER_TOLERANCE = 1e-4
CT2_LOGPROB_TOLERANCE = 1e-4


@pytest.fixture(autouse=True, scope="module")
def cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ESPNET_LALORA_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield
    whisper_sizes._loaded.clear()


def save_hf_whisper(shape: str, folder: Path, seed: int = 0):
    """A random transformers Whisper of ``shape`` with every tensor moved off its initial value
    (biases 0 and norms 1 would hide a swapped mapping), saved with its tokenizer (what
    CTranslate2's converter reads for the vocabulary)."""
    import whisper
    from transformers import WhisperConfig, WhisperForConditionalGeneration, WhisperTokenizer

    n_mels, n_vocab, encoder_layers, decoder_layers = SHAPES[shape]
    config = WhisperConfig(vocab_size=n_vocab, num_mel_bins=n_mels, d_model=WIDTH,
                           encoder_layers=encoder_layers, decoder_layers=decoder_layers,
                           encoder_attention_heads=HEADS, decoder_attention_heads=HEADS,
                           encoder_ffn_dim=4 * WIDTH, decoder_ffn_dim=4 * WIDTH)
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "embed_positions" in name:
                continue  # sinusoids, as in every real checkpoint
            p.normal_(0, p.shape[-1] ** -0.5) if p.dim() > 1 else p.add_(torch.randn_like(p) * 0.1)
    model.save_pretrained(folder, safe_serialization=True)
    assets = Path(whisper.__file__).parent / "assets" / "multilingual"
    tokenizer = WhisperTokenizer(str(assets / "vocab.json"), str(assets / "merges.txt"))
    languages = list(whisper.tokenizer.LANGUAGES)[:whisper_sizes.num_languages(n_vocab)]
    specials = ["<|endoftext|>", "<|startoftranscript|>", *[f"<|{c}|>" for c in languages],
                "<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>",
                "<|nospeech|>", "<|notimestamps|>"]
    tokenizer.add_special_tokens(dict(additional_special_tokens=specials))
    tokenizer.save_pretrained(folder)
    return model


@pytest.fixture(scope="module", params=sorted(SHAPES))
def sources(request, tmp_path_factory):
    """(shape, transformers model, its folder, CTranslate2's conversion of that folder)."""
    import ctranslate2

    shape = request.param
    root = tmp_path_factory.mktemp(shape)
    model = save_hf_whisper(shape, root / "hf")
    ctranslate2.converters.TransformersConverter(str(root / "hf")).convert(str(root / "ct2"))
    return shape, model, root / "hf", root / "ct2"


def load(name):
    import whisper

    return whisper.load_model(name, device="cpu").float().eval()


def inputs(shape, seed=1):
    """Log-mel-like features of 30 s and a prompt of SOT, language, task, no-timestamps and a
    few text tokens, with the ids of the family."""
    n_mels, n_vocab = SHAPES[shape][:2]
    torch.manual_seed(seed)
    mel = torch.randn(1, n_mels, 3000) * 0.5
    sot, v3 = 50258, n_vocab == 51866
    prompt = [sot, sot + 1 + 51, 50359 + v3, 50363 + v3]  # <|ko|> is language 51 in both
    return mel, prompt, prompt + [440, 1002, 2323, 13]


def test_hf_folder_gives_transformers_logits(sources):
    shape, hf_model, hf_dir, _ = sources
    name = ww.register_source(hf_dir)
    assert name.startswith("hf-") and ww.languages_of(name) == whisper_sizes.num_languages(
        SHAPES[shape][1])
    model = load(name)
    assert (model.dims.n_mels, model.dims.n_vocab, model.dims.n_audio_layer,
            model.dims.n_text_layer) == SHAPES[shape]
    mel, _, tokens = inputs(shape)
    tokens = torch.tensor([tokens])
    with torch.no_grad():
        theirs = hf_model(input_features=mel, decoder_input_ids=tokens).logits
        ours = model.decoder(tokens, model.encoder(mel))
    diff = (ours - theirs).abs().max().item()
    print(f"{shape}: max |logit difference| openai-whisper vs transformers = {diff:.1e} "
          f"(logits up to {theirs.abs().max():.1f})")
    assert theirs.abs().max() > 1 and diff < HF_LOGIT_TOLERANCE


def ct2_compare(model, ct2_dir, shape, compute_type="float32"):
    """Encoder outputs, then greedy decoding by CTranslate2 with every step's logits, and
    openai-whisper teacher-forced on CTranslate2's tokens: max abs differences."""
    import ctranslate2

    ct2 = ctranslate2.models.Whisper(str(ct2_dir), device="cpu", compute_type=compute_type)
    mel, prompt, _ = inputs(shape)
    features = ctranslate2.StorageView.from_array(np.ascontiguousarray(mel.numpy()))
    theirs_encoded = torch.from_numpy(np.array(ct2.encode(features, to_cpu=True)))
    result = ct2.generate(features, [prompt], beam_size=1, max_length=12, suppress_tokens=[],
                          suppress_blank=False, return_logits_vocab=True)[0]
    generated = result.sequences_ids[0]
    steps = torch.tensor(np.stack([np.array(x) for x in result.logits[0]])).reshape(
        len(result.logits[0]), -1)
    with torch.no_grad():
        encoded = model.encoder(mel)
        logits = model.decoder(torch.tensor([prompt + generated]), encoded)[0]
    ours = logits[len(prompt) - 1: len(prompt) - 1 + len(steps)]
    return dict(encoder=(encoded - theirs_encoded).abs().max().item(),
                logprob=(ours.log_softmax(-1) - steps.log_softmax(-1)).abs().max().item(),
                tokens=generated, ours_tokens=ours.argmax(-1).tolist(), steps=len(steps))


def test_ct2_folder_gives_ctranslate2_logits(sources):
    shape, _, _, ct2_dir = sources
    name = ww.register_source(ct2_dir)
    assert name.startswith("ct2-")
    model = load(name)
    found = ct2_compare(model, ct2_dir, shape)
    print(f"{shape}: openai-whisper vs CTranslate2: encoder {found['encoder']:.1e}, "
          f"log-probabilities {found['logprob']:.1e} over {found['steps']} steps")
    assert found["steps"] >= 2 and found["ours_tokens"][: len(found["tokens"])] == found["tokens"]
    assert found["encoder"] < CT2_ENCODER_TOLERANCE
    assert found["logprob"] < CT2_LOGPROB_TOLERANCE


def test_all_three_sources_hold_the_same_tensors(sources, tmp_path):
    """transformers -> ours, CTranslate2 (from the same folder) -> ours, and the resulting .pt
    given as a path itself: one set of weights, bit for bit."""
    shape, _, hf_dir, ct2_dir = sources
    hf, ct2 = (torch.load(ww.resolve_checkpoint(ww.register_source(d))[0], weights_only=True)
               for d in (hf_dir, ct2_dir))
    assert hf["dims"] == ct2["dims"]
    assert hf["model_state_dict"].keys() == ct2["model_state_dict"].keys()
    for key, tensor in hf["model_state_dict"].items():
        assert torch.equal(tensor, ct2["model_state_dict"][key]), key
    pt = ww.resolve_checkpoint(ww.register_source(ct2_dir))[0]
    name = ww.register_source(pt)  # a .pt is used where it is, not copied
    assert ww.resolve_checkpoint(name)[0] == pt


def test_int8_ctranslate2_folder_is_dequantized(sources, tmp_path):
    import ctranslate2

    shape, _, hf_dir, _ = sources
    if shape != "large-v3":
        pytest.skip("one family is enough for the int8 reader")
    ctranslate2.converters.TransformersConverter(str(hf_dir)).convert(
        str(tmp_path / "int8"), quantization="int8")
    found = ct2_compare(load(ww.register_source(tmp_path / "int8")), tmp_path / "int8", shape)
    print(f"int8: encoder {found['encoder']:.1e}, log-probabilities {found['logprob']:.1e}")
    assert found["encoder"] < CT2_ENCODER_TOLERANCE and found["logprob"] < CT2_LOGPROB_TOLERANCE


def test_a_folder_is_converted_once(sources, monkeypatch):
    _, _, hf_dir, _ = sources
    name = ww.register_source(hf_dir)
    monkeypatch.setattr(ww, "_convert_source", lambda *a: pytest.fail("converted again"))
    assert ww.register_source(hf_dir) == name


def test_espnet_loads_a_registered_name_in_a_new_process(sources):
    """ESPnet's encoder (its available_models() assertion included) on the name the driver
    gets from ``python -m espnet_lalora.bin.whisper_source``."""
    shape, _, hf_dir, _ = sources
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    name = subprocess.run([sys.executable, "-m", "espnet_lalora.bin.whisper_source", str(hf_dir)],
                          env=env, capture_output=True, text=True, check=True).stdout.strip()
    code = ("import espnet_lalora; from espnet2.asr.encoder.whisper_encoder import "
            f"OpenAIWhisperEncoder as E; e = E(whisper_model={name!r}, use_specaug=False); "
            "print(e.encoders.conv1.in_channels, len(e.encoders.blocks))")
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split()[-2:] == [str(SHAPES[shape][0]), str(SHAPES[shape][2])]


@pytest.mark.parametrize("make,message", [
    (lambda d: None, "no such file or folder; give a Whisper size name"),
    (lambda d: d.mkdir(), "neither config.json + model.safetensors (Hugging Face) nor model.bin"),
    (lambda d: (d.mkdir(), (d / "config.json").write_text('{"model_type": "bert"}'),
                (d / "model.safetensors").write_bytes(b"")), "model_type 'bert', not a Whisper"),
    (lambda d: (d.mkdir(), (d / "model.bin").write_bytes(b"\x06\0\0\0")),
     "truncated or not a CTranslate2 model.bin"),
    (lambda d: d.write_bytes(b"not a checkpoint"), "not a loadable checkpoint"),
])
def test_bad_sources_are_refused_by_name(tmp_path, make, message):
    source, before = tmp_path / "model", ww.registered()
    make(source)
    run = subprocess.run([sys.executable, "-m", "espnet_lalora.bin.whisper_source", str(source)],
                         env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True,
                         text=True)
    assert run.returncode != 0 and not run.stdout
    assert f"error: --whisper_model {source}" in run.stderr and message in run.stderr, run.stderr
    assert ww.registered() == before


def test_english_only_checkpoint_is_refused(tmp_path):
    torch.save({"dims": dict(n_vocab=51864, n_mels=80), "model_state_dict": {}},
               tmp_path / "tiny.en.pt")
    with pytest.raises(ww.WhisperSourceError, match="English-only"):
        ww.register_source(tmp_path / "tiny.en.pt")


def test_missing_weights_say_what_to_put_where():
    message = ww._not_found_message("large-v3", "/nowhere")
    for needed in ("'large-v3'", "/nowhere/large-v3.pt", "$ESPNET_LALORA_WHISPER_DIR",
                   "config.json + model.safetensors", "openai/whisper-large-v3", "model.bin",
                   "--whisper_model PATH"):
        assert needed in message, needed
