"""Stages 3-4 on small data dirs: conversion, and clear errors on bad input that leave earlier
outputs intact."""

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile


def make_data_dir(root: Path, n: int = 3, rate: int = 16000, channels: int = 1) -> Path:
    data = root / "data"
    (root / "wav").mkdir(parents=True, exist_ok=True)
    data.mkdir(parents=True, exist_ok=True)
    wav, text, utt2spk, utt2lang = [], [], [], []
    for i in range(n):
        utt = f"spk{i % 2}-utt{i}"
        t = np.arange(int(rate * 1.0)) / rate
        audio = 0.3 * np.sin(2 * np.pi * 220 * (i + 1) * t)
        if channels > 1:
            audio = np.stack([audio] * channels, axis=1)
        path = root / "wav" / f"{utt}.wav"
        soundfile.write(path, audio, rate)
        wav.append(f"{utt} {path}")
        text.append(f"{utt} こんにちは {i}")
        utt2spk.append(f"{utt} spk{i % 2}")
        utt2lang.append(f"{utt} ja")
    for name, lines in (("wav.scp", wav), ("text", text), ("utt2spk", utt2spk),
                        ("utt2lang", utt2lang)):
        (data / name).write_text("\n".join(sorted(lines)) + "\n", encoding="utf-8")
    return data


def run_format(data: Path, out: Path):
    return subprocess.run([sys.executable, "-m", "espnet_lalora.bin.format_data", "--data",
                           str(data), "--out", str(out), "--nj", "1"],
                          capture_output=True, text=True)


def test_other_rates_and_stereo_become_16k_mono(tmp_path):
    data = make_data_dir(tmp_path, rate=44100, channels=2)
    result = run_format(data, tmp_path / "dump")
    assert result.returncode == 0, result.stderr
    for line in (tmp_path / "dump" / "wav.scp").read_text().splitlines():
        info = soundfile.info(line.split(maxsplit=1)[1])
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert abs(info.frames - 16000) <= 1
    assert (tmp_path / "dump" / "utt2lang").is_file()
    assert (tmp_path / "dump" / "spk2utt").read_text().startswith("spk0 spk0-utt0 spk0-utt2")


def _break(data: Path, how: str):
    if how == "missing audio":
        (data.parent / "wav" / "spk1-utt1.wav").unlink()
        return "spk1-utt1", "does not exist", "wav.scp:3"
    if how == "corrupt audio":
        (data.parent / "wav" / "spk1-utt1.wav").write_bytes(b"RIFF\x00\x00garbage" * 10)
        return "spk1-utt1", "cannot read", "wav.scp:3"
    if how == "unreadable rate":
        soundfile.write(data.parent / "wav" / "spk1-utt1.wav", np.zeros(1000), 1000)
        return "spk1-utt1", "sample rate 1000 Hz", "wav.scp:3"
    if how == "empty transcript":
        lines = (data / "text").read_text(encoding="utf-8").splitlines()
        lines[1] = lines[1].split()[0]
        (data / "text").write_text("\n".join(lines) + "\n", encoding="utf-8")
        return "spk0-utt2", "has no transcript", "text:2"
    if how == "mismatched ids":
        (data / "text").write_text((data / "text").read_text(encoding="utf-8")
                                   .replace("spk1-utt1", "spk1-uttX"), encoding="utf-8")
        return "spk1-utt", "different utterance ids", "text and wav.scp"
    if how == "duplicate id":
        lines = (data / "wav.scp").read_text().splitlines()
        (data / "wav.scp").write_text("\n".join(lines + [lines[0]]) + "\n")
        return "spk0-utt0", "duplicate id", "wav.scp:4"
    if how == "non-UTF-8 text":
        (data / "text").write_bytes((data / "text").read_bytes().replace(
            "こんにちは 1".encode(), "こんにちは 1".encode("shift_jis")))
        return "", "not valid UTF-8", "text:3"
    raise ValueError(how)


@pytest.mark.parametrize("how", ["missing audio", "corrupt audio", "unreadable rate",
                                 "empty transcript", "mismatched ids", "duplicate id",
                                 "non-UTF-8 text"])
def test_bad_input_is_named_and_earlier_output_survives(tmp_path, how):
    data = make_data_dir(tmp_path)
    out = tmp_path / "dump"
    assert run_format(data, out).returncode == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}

    utt, what, where = _break(data, how)
    result = run_format(data, out)
    assert result.returncode != 0
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("error:") and what in message and utt in message, message
    assert where.split(":")[0] in message and (":" not in where or where in message), message
    # The earlier complete output is untouched and no temporary folder is left behind.
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert not (tmp_path / "dump.tmp").exists()


def test_filter_drops_short_and_writes_whisper_prompt_text(tmp_path):
    data = make_data_dir(tmp_path, n=3)
    assert run_format(data, tmp_path / "org").returncode == 0
    result = subprocess.run([sys.executable, "-m", "espnet_lalora.bin.filter_data", "--data",
                             str(tmp_path / "org"), "--out", str(tmp_path / "filtered"),
                             "--min_sec", "0.5", "--max_sec", "30"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    prompt = (tmp_path / "filtered" / "text_whisper").read_text(encoding="utf-8").splitlines()
    assert prompt[0] == "spk0-utt0 <|ja|>こんにちは 0"
    too_strict = subprocess.run([sys.executable, "-m", "espnet_lalora.bin.filter_data", "--data",
                                 str(tmp_path / "org"), "--out", str(tmp_path / "none"),
                                 "--min_sec", "5"], capture_output=True, text=True)
    assert too_strict.returncode != 0 and "no utterance left" in too_strict.stderr


def test_unknown_language_is_rejected(tmp_path):
    data = make_data_dir(tmp_path)
    (data / "utt2lang").write_text((data / "utt2lang").read_text().replace(" ja", " jp"))
    assert run_format(data, tmp_path / "org").returncode == 0
    result = subprocess.run([sys.executable, "-m", "espnet_lalora.bin.filter_data", "--data",
                             str(tmp_path / "org"), "--out", str(tmp_path / "f")],
                            capture_output=True, text=True)
    assert result.returncode != 0 and "'jp'" in result.stderr and "utt2lang" in result.stderr


def test_shell_pipe_is_refused_unless_allowed(tmp_path):
    """A wav.scp command (Kaldi's 'cmd |') runs in a shell: stage 3 refuses it, before running
    or writing anything, unless --allow_pipes true."""
    data = make_data_dir(tmp_path)
    out = tmp_path / "dump"
    assert run_format(data, out).returncode == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    lines = (data / "wav.scp").read_text().splitlines()
    utt, wav = lines[2].split()
    planted = tmp_path / "planted"
    lines[2] = f"{utt} touch {planted}; cat {wav} |"
    (data / "wav.scp").write_text("\n".join(lines) + "\n")

    result = run_format(data, out)
    assert result.returncode != 0
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith(f"error: {data / 'wav.scp'}:3: utterance {utt}: "), message
    assert "is a shell command" in message and "--allow_pipes true" in message, message
    assert not planted.exists()
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert not (tmp_path / "dump.tmp").exists()

    lines[2] = f"{utt} cat {wav} |"  # harmless, and allowed
    (data / "wav.scp").write_text("\n".join(lines) + "\n")
    result = subprocess.run([sys.executable, "-m", "espnet_lalora.bin.format_data", "--data",
                             str(data), "--out", str(out), "--nj", "1", "--allow_pipes", "true"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    converted, _ = soundfile.read(out / "data" / f"{utt}.wav", dtype="float32")
    original, _ = soundfile.read(wav, dtype="float32")
    assert np.abs(converted - original).max() < 1e-3


def test_speed_perturbed_entries_need_no_opt_in(tmp_path):
    """Stage 2 writes 'sox FILE ... speed F |': run without a shell, stage 3 reads them with no
    --allow_pipes; a perturbed shell command stays refused."""
    data = make_data_dir(tmp_path, n=2)
    result = subprocess.run([sys.executable, "-m", "espnet_lalora.bin.speed_perturb", "--data",
                             str(data), "--out", str(tmp_path / "sp"), "--factors", "0.8 1.0"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    result = run_format(tmp_path / "sp", tmp_path / "dump")
    assert result.returncode == 0, result.stderr
    samples = (tmp_path / "dump" / "utt2num_samples").read_text().split()
    lengths = dict(zip(samples[::2], map(int, samples[1::2])))
    assert lengths["spk0-utt0"] == 16000 and abs(lengths["sp0.8-spk0-utt0"] - 20000) <= 2

    # The same entry with one more shell word is a command again.
    planted = tmp_path / "planted"
    scp = (tmp_path / "sp" / "wav.scp").read_text().splitlines()
    scp[0] = scp[0].replace(" |", f" $(touch {planted}) |")
    (tmp_path / "sp" / "wav.scp").write_text("\n".join(scp) + "\n")
    result = run_format(tmp_path / "sp", tmp_path / "dump")
    assert result.returncode != 0 and "wav.scp:1:" in result.stderr, result.stderr
    assert not planted.exists()


@pytest.mark.parametrize("target", [".", "..", "sub/../..", "/"])
def test_replace_dir_never_replaces_the_recipe_or_above(tmp_path, monkeypatch, target):
    from espnet_lalora.datadir import DataDirError, replace_dir

    recipe = tmp_path / "recipe"
    (recipe / "sub").mkdir(parents=True)
    (recipe / "keep.txt").write_text("precious")
    monkeypatch.chdir(recipe)
    new = recipe / "new.tmp"
    new.mkdir()
    with pytest.raises(DataDirError, match="refusing to replace this folder"):
        replace_dir(new, Path(target))
    assert (recipe / "keep.txt").read_text() == "precious" and new.is_dir()
    replace_dir(new, Path("out"))  # a folder of its own is fine
    assert (recipe / "out").is_dir() and not new.exists()


def test_rewriting_the_same_data_dir_keeps_it_untouched(tmp_path):
    """A stage 1 that is run again (its script changed) and writes the same data dir must not
    touch it: the stages after it fingerprint its files by size and time."""
    from espnet_lalora.datadir import write_data_dir

    files = {"text": {"u1": "a b"}, "utt2spk": {"u1": "s1"}, "wav.scp": {"u1": "/x.wav"}}
    write_data_dir(tmp_path / "d", files)
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "d").iterdir()}
    time.sleep(0.01)
    write_data_dir(tmp_path / "d", files)
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "d").iterdir()} == before
    assert not (tmp_path / "d.tmp").exists()
    write_data_dir(tmp_path / "d", dict(files, text={"u1": "a c"}))
    assert (tmp_path / "d" / "text").read_text() == "u1 a c\n"
