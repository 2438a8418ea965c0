"""Completion stamps: what a fingerprint covers (files, folders, the audio a wav.scp lists, the
Whisper weights by content), and that a damaged stamp never counts as done."""

import os

from espnet_lalora.stamp import fingerprint, is_done, mark_done
from espnet_lalora.whisper_weights import file_sha256


def test_the_audio_that_a_wav_scp_lists_is_part_of_the_fingerprint(tmp_path):
    audio = tmp_path / "a.wav"
    audio.write_bytes(b"RIFF....")
    scp = tmp_path / "wav.scp"
    scp.write_text(f"u1 {audio}\nu2 sox {audio} -t wav - |\n")
    before = fingerprint([f"listed:{scp}"])
    assert fingerprint([f"listed:{scp}"]) == before
    st = audio.stat()
    os.utime(audio, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # a newer recording
    assert fingerprint([f"listed:{scp}"]) != before
    # the folder alone (wav.scp unchanged) did not see it
    assert fingerprint([str(tmp_path / "wav.scp")]) == fingerprint([str(scp)])
    audio.unlink()
    assert fingerprint([f"listed:{scp}"]) not in (before,)


def test_options_and_inputs_both_count(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x").write_text("1")
    base = fingerprint([str(tmp_path / "d")], "a")
    assert fingerprint([str(tmp_path / "d")], "b") != base
    (tmp_path / "d" / "y").write_text("2")
    assert fingerprint([str(tmp_path / "d")], "a") != base


def test_a_damaged_stamp_is_not_done(tmp_path):
    stamp = tmp_path / ".done"
    mark_done(stamp, "abc")
    assert is_done(stamp, "abc") and not is_done(stamp, "abd")
    stamp.write_text('{"fingerprint": "ab')  # cut short
    assert not is_done(stamp, "abc")
    assert not is_done(tmp_path / "missing", "abc")


def test_the_whisper_weights_count_by_content(tmp_path, monkeypatch):
    """Stages 6-10 use ``whisper-id``: other weights under the same name give another id."""
    from espnet_lalora.stamp import whisper_checkpoint_id

    monkeypatch.setenv("ESPNET_LALORA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("ESPNET_LALORA_WHISPER_DIR", str(tmp_path))
    weights = tmp_path / "base.pt"
    weights.write_bytes(b"first weights")
    first = whisper_checkpoint_id("base")
    assert first.startswith("base:") and whisper_checkpoint_id("base") == first
    weights.write_bytes(b"other weights")
    assert whisper_checkpoint_id("base") != first
    os.utime(weights, (1e9, 1e9))  # an old file: its hash is remembered (path, size, time)
    assert whisper_checkpoint_id("base") != first
    assert file_sha256(weights) in (tmp_path / "cache" / "sha256.json").read_text()
