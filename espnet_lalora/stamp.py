"""Completion stamps: a stage's outputs count as complete when its stamp holds the fingerprint
of its inputs and options. Re-running a finished stage then does nothing and says so; a stage
killed half-way has no stamp (the driver removes it before the stage starts) and is redone.

An input is a file or a folder (every file in it: path, size, modification time), or
``listed:WAV_SCP``: every audio file that a Kaldi ``wav.scp`` lists (its command lines are in the
``wav.scp`` itself). :func:`whisper_checkpoint_id` names the Whisper weights by content.
"""

import hashlib
import json
from pathlib import Path
from typing import Iterable

from espnet_lalora.fileio import write_text_atomic


def _files(item: str):
    if item.startswith("listed:"):
        scp = Path(item[len("listed:"):])
        if not scp.is_file():
            return [scp]
        lines = scp.read_text(encoding="utf-8", errors="replace").splitlines()
        values = [line.split(maxsplit=1)[1].strip() for line in lines if len(line.split()) > 1]
        return [Path(v) for v in values if not v.endswith("|")]
    path = Path(item)
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]


def fingerprint(inputs: Iterable[str], options: str = "") -> str:
    digest = hashlib.sha256(options.encode())
    for item in inputs:
        digest.update(f"[{item}]\n".encode())
        for f in _files(item):
            if f.is_file():
                st = f.stat()
                digest.update(f"{f}:{st.st_size}:{st.st_mtime_ns}\n".encode())
            else:
                digest.update(f"{f}:missing\n".encode())
    return digest.hexdigest()[:20]


def is_done(stamp, value: str) -> bool:
    stamp = Path(stamp)
    try:
        return json.loads(stamp.read_text()).get("fingerprint") == value
    except (OSError, ValueError):  # no stamp, or a damaged one: not done
        return False


def mark_done(stamp, value: str, **info):
    write_text_atomic(stamp, json.dumps({"fingerprint": value, **info}, indent=1))


def whisper_checkpoint_id(name: str) -> str:
    """``<name>:<sha256 prefix>`` of the checkpoint that ``whisper.load_model(name)`` loads
    here (espnet_lalora.whisper_weights resolves it): a stage that uses the model is redone
    when the weights change, even under the same name."""
    import whisper

    from espnet_lalora.whisper_weights import (WhisperWeightsNotFound, file_sha256, registered,
                                               resolve_checkpoint)

    if name not in whisper._MODELS and name not in registered():
        raise WhisperWeightsNotFound(f"--whisper_model {name}: not a Whisper model name; one of "
                                     f"{', '.join(whisper._MODELS)}")
    path, _ = resolve_checkpoint(name, None, whisper._MODELS)
    if path is None:
        from espnet_lalora.whisper_weights import _not_found_message

        raise WhisperWeightsNotFound(_not_found_message(name, None))
    return f"{name}:{file_sha256(path)[:16]}"
