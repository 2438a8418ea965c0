"""Completion stamps: a stage's outputs count as complete when its stamp holds the fingerprint
of its inputs and options. Re-running a finished stage then does nothing and says so; a stage
killed half-way has no stamp and is redone."""

import hashlib
import json
from pathlib import Path
from typing import Iterable


def fingerprint(inputs: Iterable, options: str = "") -> str:
    digest = hashlib.sha256(options.encode())
    for item in inputs:
        path = Path(item)
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            if f.is_file():
                st = f.stat()
                digest.update(f"{f}:{st.st_size}:{st.st_mtime_ns}\n".encode())
            else:
                digest.update(f"{f}:missing\n".encode())
    return digest.hexdigest()[:20]


def is_done(stamp, value: str) -> bool:
    stamp = Path(stamp)
    return stamp.is_file() and json.loads(stamp.read_text()).get("fingerprint") == value


def mark_done(stamp, value: str, **info):
    stamp = Path(stamp)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    tmp = stamp.with_name(stamp.name + ".tmp")
    tmp.write_text(json.dumps({"fingerprint": value, **info}, indent=1))
    tmp.replace(stamp)
