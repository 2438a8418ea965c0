"""Stage 10's CTranslate2 backend (``whisper_inference --backend ct2``) against faster-whisper
itself on real speech: the Asterisk telephone prompts of the installed Debian packages (8 kHz,
resampled to 16 kHz), one of them longer than 30 s."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

SOUNDS = Path("/usr/share/asterisk/sounds")
# (language, voice folder, prompt): one- and several-sentence prompts, a digit, a short word
PROMPTS = [("en", "en_US_f_Allison", "demo-nogo"), ("en", "en_US_f_Allison", "vm-intro"),
           ("en", "en_US_f_Allison", "digits/7"), ("es", "es_MX_f_Allison", "conf-adminmenu-18"),
           ("es", "es_MX_f_Allison", "agent-loggedoff")]  # conf-adminmenu-18 is 32.6 s long


def _resampled(wav: Path, out: Path) -> np.ndarray:
    subprocess.run(["sox", str(wav), "-r", "16000", "-c", "1", "-b", "16", str(out)], check=True)
    return soundfile.read(out, dtype="float32")[0]


@pytest.fixture(scope="module")
def prompts(tmp_path_factory):
    """[(id, 16-kHz waveform, language, path)], plus one over 30 s (three prompts joined)."""
    root = tmp_path_factory.mktemp("real")
    out = []
    for lang, voice, name in PROMPTS:
        utt = f"{lang}-{name.replace('/', '_')}"
        path = root / f"{utt}.wav"
        out.append((utt, _resampled(SOUNDS / voice / f"{name}.wav", path), lang, path))
    long_path = root / "en-joined.wav"
    joined = np.concatenate([out[0][1], out[1][1], out[0][1], out[1][1]])
    soundfile.write(long_path, joined, 16000, subtype="PCM_16")
    assert len(joined) > 30 * 16000
    out.append(("en-joined", soundfile.read(long_path, dtype="float32")[0], "en", long_path))
    return out


@pytest.fixture(scope="module")
def ct2_base():
    from espnet_lalora.whisper_weights import prepare_ct2_model

    return prepare_ct2_model("base")


def _faster_whisper(model, audio, lang, temperatures):
    segments, _ = model.transcribe(audio, language=lang, beam_size=5, temperature=temperatures,
                                   without_timestamps=True, condition_on_previous_text=False,
                                   no_speech_threshold=None)
    return [t for s in segments for t in s.tokens]


def test_a_batch_decodes_as_faster_whisper_one_at_a_time(prompts, ct2_base):
    """Temperature 0 (the fallback samples at random: compared below by what it is given)."""
    from espnet_lalora.ct2_transcriber import CT2Options, CT2Transcriber

    ct2 = CT2Transcriber(ct2_base, CT2Options())
    batch = ct2([audio for _, audio, _, _ in prompts], [lang for _, _, lang, _ in prompts])
    for (utt, audio, lang, _), (text, tokens, score) in zip(prompts, batch):
        assert list(tokens) == _faster_whisper(ct2.whisper, audio, lang, [0.0]), utt
        assert text and score < 0, utt
    # the joined prompt is read past its first 30 s
    joined = batch[-1][0].lower()
    assert joined.count("demonstration") == 2 and joined.count("tone") == 2, joined


def test_the_fallback_retries_what_fails_faster_whispers_checks(prompts, ct2_base, monkeypatch):
    """Every result fails a log-probability threshold of 0: each short utterance goes through
    faster-whisper's own fallback, given its own encoder output and prompt, and its result is
    the fallback's."""
    from espnet_lalora.ct2_transcriber import CT2Options, CT2Transcriber

    ct2 = CT2Transcriber(ct2_base, CT2Options(temperatures=(0.0, 0.5), logprob_threshold=0.0))
    calls = []
    real = ct2.whisper.generate_with_fallback

    def spy(encoder_output, prompt, tokenizer, options):
        result = real(encoder_output, prompt, tokenizer, options)
        calls.append((prompt, options.temperatures, result[0].sequences_ids[0]))
        return result

    monkeypatch.setattr(ct2.whisper, "generate_with_fallback", spy)
    short = [p for p in prompts if len(p[1]) < 30 * 16000]  # es-conf-adminmenu-18: 32.6 s
    assert len(short) == 4
    batch = ct2([audio for _, audio, _, _ in short], [lang for _, _, lang, _ in short])
    assert len(calls) == len(short)
    for (utt, _, lang, _), (prompt, temperatures, tokens), (_, ours, _) in zip(short, calls, batch):
        assert prompt[1] == ct2.tokenizer(lang).language and temperatures == [0.0, 0.5], utt
        assert list(ours) == list(tokens), utt


def test_a_loop_is_cut_where_the_pytorch_decoders_guard_ends_it(prompts, ct2_base, monkeypatch):
    """CTranslate2 has no repetition guard: a looping result (zero-shot Whisper base loops on 1
    or 2 of 40 synthetic Korean sentences, to the 224-token cap) is cut by the PyTorch
    decoder's rule, its text decoded again from what is left; other results are untouched."""
    from espnet_lalora.ct2_transcriber import CT2Options, CT2Transcriber

    ct2 = CT2Transcriber(ct2_base, CT2Options())
    tokenizer = ct2.tokenizer("ko")
    sentence = tokenizer.encode(" 감사합니다.")
    loop = tokenizer.encode(" 안녕하세요") + sentence * 40
    speech = tokenizer.encode(" 네 네 네 네 네 네")
    monkeypatch.setattr(ct2, "_search", lambda audios, langs: [
        ("looping text", loop, -80.0), ("speech", speech, -3.0)])
    (text, tokens, score), kept = ct2([None, None], ["ko", "ko"])
    assert len(tokens) < len(loop) and tokens == loop[:len(tokens)], tokens
    assert text.startswith("안녕하세요") and text.count("감사합니다") <= 20 // len(sentence) + 1, text
    assert score == -80.0 and kept == ("speech", speech, -3.0)
    ct2.options.repetition_guard = 0
    assert ct2([None], ["ko"])[0][1] == loop


def stage10_inputs(prompts, tmp_path):
    """(wav.scp, utt2lang, zero-shot config) of the prompts, as stage 10 reads them."""
    wav_scp, utt2lang = tmp_path / "wav.scp", tmp_path / "utt2lang"
    wav_scp.write_text("".join(f"{u} {p}\n" for u, _, _, p in prompts))
    utt2lang.write_text("".join(f"{u} {lang}\n" for u, _, lang, _ in prompts))
    root = Path(__file__).resolve().parents[1]
    tokens, config = tmp_path / "tokens.txt", tmp_path / "zero_shot.yaml"
    subprocess.run([sys.executable, "-m", "espnet2.bin.whisper_export_vocabulary",
                    "--whisper_model", "whisper_multilingual", "--output", str(tokens)],
                   check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", "espnet_lalora.bin.make_zeroshot_config",
                    "--asr_config", str(root / "egs2/mini_multi/asr1/conf/train_lora.yaml"),
                    "--token_list", str(tokens), "--whisper_model", "base", "--out", str(config)],
                   check=True, cwd=root / "egs2/mini_multi/asr1")
    return wav_scp, utt2lang, config


def test_stage10_ct2_backend_writes_espnet_outputs(prompts, tmp_path):
    wav_scp, utt2lang, config = stage10_inputs(prompts, tmp_path)
    base = [sys.executable, "-m", "espnet_lalora.bin.whisper_inference",
            "--asr_train_config", str(config), "--utt2lang", str(utt2lang),
            "--data_path_and_name_and_type", f"{wav_scp},speech,sound", "--batch_size", "3"]
    out = tmp_path / "out"
    subprocess.run(base + ["--backend", "ct2", "--output_dir", str(out)], check=True)
    result = out / "1best_recog"
    files = {name: dict(line.split(" ", 1) for line in
                        (result / name).read_text(encoding="utf-8").splitlines())
             for name in ("text", "token", "token_int", "score")}
    assert all(set(f) == {u for u, _, _, _ in prompts} for f in files.values())
    assert "after the tone" in files["text"]["en-vm-intro"].lower()
    assert files["token"]["en-vm-intro"].split()[0].startswith("Ġ")
    assert all(float(s) < 0 for s in files["score"].values())

    for args, message in [(["--backend", "pytorch", "--temperatures", "0,0.2"],
                           "an option of --backend ct2"),
                          (["--backend", "ct2", "--temperatures", "hot"], "--temperatures 'hot'"),
                          (["--backend", "ct2", "--detect_language", "true"],
                           "need --backend pytorch"),
                          (["--backend", "ct2", "--silence_tail", "-1"],
                           "--silence_tail -1.0: seconds, 0 or more")]:
        run = subprocess.run(base + args + ["--output_dir", str(tmp_path / "bad")],
                             capture_output=True, text=True)
        assert run.returncode != 0 and message in run.stderr, (args, run.stderr[-500:])


def test_ct2_backend_refuses_routed_experts_and_missing_exports(tmp_path):
    from espnet_lalora.ct2_transcriber import ct2_folder

    bundle = tmp_path / "exp/export/experts"
    bundle.mkdir(parents=True)
    (bundle / "experts.yaml").write_text("languages: [ja]\n")
    with pytest.raises(ValueError, match="language-expert bundle .* --backend pytorch"):
        ct2_folder(bundle / "experts.pth", None)
    with pytest.raises(ValueError, match="only export/merged .* --backend pytorch"):
        ct2_folder(tmp_path / "exp/export/fused_learned/model.pth", None)
    merged = tmp_path / "exp/export/merged"
    merged.mkdir(parents=True)
    with pytest.raises(ValueError, match="no CTranslate2 model at .*export/ct2 .*stage 9"):
        ct2_folder(merged / "model.pth", None)


def test_stage10_result_does_not_depend_on_the_batch(prompts, tmp_path):
    """Read unpadded (as a model fine-tuned here), each utterance gets --silence_tail and is
    padded to whole seconds, batched only with utterances of that length: batch size 1 and 4
    give the same tokens. Without the tail (0: each batch padded to its longest, the old way)
    they do not, on these prompts."""
    short = [p for p in prompts if len(p[1]) < 30 * 16000]
    wav_scp, utt2lang, config = stage10_inputs(short, tmp_path)

    def decode(batch_size, tail):
        out = tmp_path / f"b{batch_size}_t{tail}"
        subprocess.run([sys.executable, "-m", "espnet_lalora.bin.whisper_inference",
                        "--asr_train_config", str(config), "--utt2lang", str(utt2lang),
                        "--data_path_and_name_and_type", f"{wav_scp},speech,sound",
                        "--backend", "ct2", "--do_pad_trim", "false", "--max_tokens", "40",
                        "--silence_tail", str(tail), "--batch_size", str(batch_size),
                        "--output_dir", str(out)], check=True, capture_output=True)
        return (out / "1best_recog/token_int").read_text()

    assert decode(1, 1.0) == decode(4, 1.0)
    assert decode(1, 0) != decode(4, 0)
