"""Kaldi-style data directories: read with line-accurate errors, validate, write atomically.

A data dir holds ``wav.scp`` (id -> path, or a command ending in ``|``), ``text`` (id ->
transcript), ``utt2spk``, ``spk2utt`` and, in this project, ``utt2lang`` (id -> ISO 639-1 code).

A ``wav.scp`` command (a Kaldi pipe) runs in a shell, so it only runs where the user allows it
(``--allow_pipes true``): a corpus from elsewhere could hold any command. Stage 2's own
speed-perturbation entries (``sox FILE -t wav - speed F |``) are the exception: they are run as
one sox process without a shell, which reads FILE and nothing else.
"""

import os
import re
import shlex
import shutil
from collections import OrderedDict
from pathlib import Path
from typing import Dict, Iterable, List, Optional

REQUIRED = ("wav.scp", "text", "utt2spk")
OPTIONAL = ("utt2lang", "spk2utt", "segments", "utt2dur", "utt2num_samples")


class DataDirError(ValueError):
    """Bad input in a data dir; the message names the file and line and says what to do."""


def read_map(path, what: Optional[str] = None) -> "OrderedDict[str, str]":
    """Read ``id value`` lines. Errors name ``path:line``: non-UTF-8, a missing value, a
    duplicate id."""
    path = Path(path)
    if not path.is_file():
        raise DataDirError(f"{path}: file not found")
    out = OrderedDict()
    raw = path.read_bytes()
    for number, line in enumerate(raw.split(b"\n"), 1):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataDirError(f"{path}:{number}: not valid UTF-8 ({e.reason} at byte {e.start}); "
                               "re-encode the file as UTF-8 (e.g. iconv -f SHIFT_JIS -t UTF-8)")
        line = line.rstrip("\r")
        if not line.strip():
            continue
        key, _, value = line.strip().partition(" ")
        value = value.strip()
        if not value:
            raise DataDirError(f"{path}:{number}: utterance {key!r} has no {what or 'value'}; "
                               "fill it in or remove the line")
        if key in out:
            raise DataDirError(f"{path}:{number}: duplicate id {key!r}; ids must be unique")
        out[key] = value
    return out


def line_of(path, key: str) -> int:
    """The line of ``path`` whose id is ``key`` (0: none), for error messages."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            if line.split(maxsplit=1)[:1] == [key]:
                return number
    return 0


def sox_speed_argv(spec: str) -> Optional[List[str]]:
    """``["sox", FILE, "-t", "wav", "-", "speed", F]`` when ``spec`` is stage 2's own entry
    ``sox FILE -t wav - speed F |`` (bin/speed_perturb.py), else None."""
    if not spec.endswith("|"):
        return None
    try:
        argv = shlex.split(spec[:-1])
    except ValueError:
        return None
    if (len(argv) == 7 and argv[0] == "sox" and argv[2:6] == ["-t", "wav", "-", "speed"]
            and re.fullmatch(r"\d+(\.\d+)?", argv[6])):
        return argv
    return None


def is_shell_command(spec: str) -> bool:
    """A ``wav.scp`` entry that would run in a shell: a pipe other than stage 2's sox entries."""
    return spec.endswith("|") and sox_speed_argv(spec) is None


def check_no_shell_commands(wav_scp, entries: Dict[str, str], how_to_allow: str):
    """Refuse the first shell command of ``entries`` (read from ``wav_scp``), naming its line."""
    for utt, spec in entries.items():
        if is_shell_command(spec):
            raise DataDirError(
                f"{wav_scp}:{line_of(wav_scp, utt)}: utterance {utt}: '{spec}' is a shell "
                "command (a Kaldi pipe, ending in '|'), and commands from a data dir are not run "
                f"unless you allow them. If you trust this data, {how_to_allow}; otherwise "
                "list audio files in wav.scp instead")


def write_map(path, mapping: Dict[str, str]):
    """Write sorted ``id value`` lines atomically (a temporary file moved into place)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for key in sorted(mapping):
            f.write(f"{key} {mapping[key]}".rstrip(" ") + "\n")
    os.replace(tmp, path)


def spk2utt(utt2spk: Dict[str, str]) -> Dict[str, str]:
    speakers = OrderedDict()
    for utt in sorted(utt2spk):
        speakers.setdefault(utt2spk[utt], []).append(utt)
    return {spk: " ".join(utts) for spk, utts in speakers.items()}


def load_data_dir(directory, require_lang: bool = False) -> Dict[str, Dict[str, str]]:
    """Read and check a data dir: the files of ``REQUIRED`` exist, every file holds the same
    utterance ids, and no transcript is empty. Returns ``{file name: mapping}``."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataDirError(f"{directory}: data directory does not exist")
    names = list(REQUIRED) + (["utt2lang"] if require_lang else [])
    for name in names:
        if not (directory / name).is_file():
            raise DataDirError(f"{directory}/{name}: missing; a data dir needs "
                               f"{', '.join(names)}")
    if not require_lang and (directory / "utt2lang").is_file():
        names.append("utt2lang")  # optional, but checked like the others when present
    what = {"text": "transcript", "wav.scp": "audio path", "utt2spk": "speaker",
            "utt2lang": "language"}
    files = {name: read_map(directory / name, what.get(name)) for name in names}
    reference = files["wav.scp"]
    for name, mapping in files.items():
        if name == "wav.scp":
            continue
        only_here = [k for k in mapping if k not in reference]
        only_wav = [k for k in reference if k not in mapping]
        if only_here or only_wav:
            sample = (only_here or only_wav)[:3]
            where = f"in {name} but not in wav.scp" if only_here else f"in wav.scp but not in {name}"
            raise DataDirError(
                f"{directory}: {name} and wav.scp have different utterance ids "
                f"({len(only_here) + len(only_wav)} differ; e.g. {sample} {where}); "
                "every file of a data dir must list the same utterances")
    return files


def write_data_dir(directory, files: Dict[str, Dict[str, str]]):
    """Write a whole data dir atomically: into ``<dir>.tmp``, then moved into place. A dir that
    already holds exactly these files is left as it is, times included: the stages after it
    see unchanged inputs and are not redone."""
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, mapping in files.items():
        write_map(tmp / name, mapping)
    if "utt2spk" in files:
        write_map(tmp / "spk2utt", spk2utt(files["utt2spk"]))
    if _same_files(tmp, directory):
        shutil.rmtree(tmp)
        return
    replace_dir(tmp, directory)


def _same_files(new: Path, old: Path) -> bool:
    if not old.is_dir():
        return False
    names = sorted(p.name for p in new.iterdir())
    return names == sorted(p.name for p in old.iterdir()) and all(
        (new / n).is_file() and (old / n).is_file()
        and (new / n).read_bytes() == (old / n).read_bytes() for n in names)


def replace_dir(tmp: Path, directory: Path):
    """Move a finished ``tmp`` over ``directory`` (the old one is removed only once the new one
    is complete). An output folder is never the working folder, one of its parents, a home or
    the root, nor named through ``..``: a mistyped option must not delete a recipe or more."""
    directory = Path(directory)
    resolved, cwd = directory.resolve(), Path.cwd().resolve()
    if (".." in directory.parts or resolved == cwd or resolved in cwd.parents
            or resolved == Path.home().resolve() or resolved == Path(resolved.anchor)):
        raise DataDirError(f"{directory}: refusing to replace this folder (it is the working "
                           "folder, one of its parents, a home or the root, or named with '..'); "
                           "give an output folder of its own, e.g. dump/raw/<set>")
    old = directory.with_name(directory.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if directory.exists():
        directory.rename(old)
    tmp.rename(directory)
    shutil.rmtree(old, ignore_errors=True)


def subset(files: Dict[str, Dict[str, str]], keep: Iterable[str]) -> Dict[str, Dict[str, str]]:
    keep = set(keep)
    return {name: {k: v for k, v in m.items() if k in keep} for name, m in files.items()
            if name != "spk2utt"}
