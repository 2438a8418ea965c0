"""The embedded recipe's test sets (egs2/mini_multi/asr1/local/synth_corpus.py): the in-grammar
`test` and the out-of-domain test_free / test_room / test_engine, built for real (espeak-ng, sox,
Open JTalk, flite) on a few utterances."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from espnet_lalora.datadir import read_map

LOCAL = Path(__file__).resolve().parents[1] / "egs2/mini_multi/asr1/local"
sys.path.insert(0, str(LOCAL))
import free_sentences  # noqa: E402
import synth_corpus  # noqa: E402

sys.path.remove(str(LOCAL))

SMALL = ["--langs", "ja,en,ko", "--train_per_lang", "3", "--dev_per_lang", "1",
         "--test_per_lang", "2", "--nj", "2"]


def synth(out, *extra):
    return subprocess.run([sys.executable, str(LOCAL / "synth_corpus.py"), "--out", str(out / "data"),
                           "--audio_dir", str(out / "audio"), *SMALL, *extra],
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    result = synth(out, "--free_per_lang", "2", "--room_per_lang", "2", "--engine_per_lang", "2")
    assert result.returncode == 0, result.stderr
    return out / "data"


def test_out_of_domain_sets_differ_from_test_in_one_way_each(corpus):
    test = read_map(corpus / "test" / "text")
    train_speakers = set(read_map(corpus / "train" / "utt2spk").values())
    # test_room and test_engine read test's own sentences; test_free reads new ones.
    for name in ("test_room", "test_engine"):
        texts = read_map(corpus / name / "text")
        assert texts and set(texts.values()) <= set(test.values()), name
        assert not set(read_map(corpus / name / "utt2spk").values()) & train_speakers, name
    room = read_map(corpus / "test_room" / "utt2lang")
    assert sorted(room.values()) == ["en", "en", "ja", "ja", "ko", "ko"]
    assert sorted(read_map(corpus / "test_engine" / "utt2lang").values()) == ["en", "en", "ja", "ja"]
    free = read_map(corpus / "test_free" / "text")
    expected = {w for lang in ("ja", "en", "ko") for w, _ in free_sentences.FREE_SENTENCES[lang][:2]}
    assert set(free.values()) == expected and not expected & set(test.values())
    # every listed file exists, with speech in it
    for name in ("test_free", "test_room", "test_engine"):
        for utt, wav in read_map(corpus / name / "wav.scp").items():
            audio, rate = sf.read(wav)
            assert len(audio) / rate > 0.8 and np.abs(audio).max() > 0.05, (name, utt)


def test_engines_are_the_named_ones(corpus):
    wavs = read_map(corpus / "test_engine" / "wav.scp")
    rates = {utt.split("-")[0]: sf.info(wav).samplerate for utt, wav in wavs.items()}
    assert rates["ja_mei"] == 48000  # Open JTalk's Mei voice
    assert {rate for spk, rate in rates.items() if spk.startswith("en_")} == {16000}  # flite


def test_the_extra_sets_leave_train_dev_test_unchanged(corpus, tmp_path):
    result = synth(tmp_path, "--free_per_lang", "0", "--room_per_lang", "0",
                   "--engine_per_lang", "0")
    assert result.returncode == 0, result.stderr
    for name in ("train", "dev", "test"):
        for file in ("text", "utt2spk"):
            assert read_map(tmp_path / "data" / name / file) == read_map(corpus / name / file)
    assert not (tmp_path / "data" / "test_room").exists()


def test_noise_is_added_at_the_stated_snr():
    rng = np.random.default_rng(0)
    speech = np.concatenate([np.zeros(8000), 0.3 * np.sin(np.arange(32000) / 7.0), np.zeros(8000)])
    speech += 1e-4 * rng.standard_normal(len(speech))
    noisy = synth_corpus.add_noise(speech, 10, seed=3)
    active = np.abs(speech) > 0.01 * np.abs(speech).max()
    noise = noisy - speech
    snr = 10 * np.log10(np.mean(speech[active] ** 2) / np.mean(noise ** 2))
    assert abs(snr - 10) < 0.01, snr
    assert np.array_equal(noisy, synth_corpus.add_noise(speech, 10, seed=3))  # seeded


@pytest.mark.parametrize("extra,message", [
    (["--room_per_lang", "3"], "--room_per_lang 3: must be 0..2"),
    (["--engine_per_lang", "-1"], "--engine_per_lang -1: must be 0..2"),
    (["--free_per_lang", "41"], "--free_per_lang 41: must be 0..40"),
    (["--test_per_lang", "-2"], "--test_per_lang -2: must be 0 or more"),
])
def test_bad_counts_are_refused_before_any_audio(tmp_path, extra, message):
    result = synth(tmp_path, *extra)
    assert result.returncode != 0 and message in result.stderr, result.stderr
    assert not (tmp_path / "data").exists()


def test_a_missing_engine_names_the_package_and_the_way_out(monkeypatch):
    monkeypatch.setattr(synth_corpus.shutil, "which", lambda name: None)
    with pytest.raises(SystemExit) as stop:
        synth_corpus.check_engines(["ja", "en"], 2)
    assert "open-jtalk" in str(stop.value) and "--engine_per_lang 0" in str(stop.value)
    synth_corpus.check_engines(["ja", "en"], 0)  # not asked for: not needed


def test_a_train_subset_keeps_dev_and_test(corpus, tmp_path):
    result = synth(tmp_path, "--train_subset", "2", "--free_per_lang", "2", "--room_per_lang", "2",
                   "--engine_per_lang", "2")
    assert result.returncode == 0, result.stderr
    full = read_map(corpus / "train" / "text")
    subset = read_map(tmp_path / "data" / "train" / "text")
    assert len(subset) == 6 and set(subset.items()) < set(full.items())
    for name in ("dev", "test", "test_free", "test_room", "test_engine"):
        assert read_map(tmp_path / "data" / name / "text") == read_map(corpus / name / "text"), name
    bad = synth(tmp_path / "bad", "--train_subset", "4")
    assert bad.returncode != 0 and "--train_subset 4: must be 1..--train_per_lang (3)" in bad.stderr
