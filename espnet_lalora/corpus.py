"""Stage 1 for corpora on disk: what the corpus readers share (Common Voice, JSUT, Zeroth-Korean,
and the generic table importer in ``espnet_lalora.bin.import_corpus``).

A reader turns a corpus into ``Utt`` records per set, raises ``CorpusError`` (naming the file,
line and what to do) before anything is written, and ``write_sets`` then writes the Kaldi data
dirs, each one atomically. Nothing here downloads: the user points ``--corpus_dir`` at a copy.
"""

import random
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Sequence

from espnet_lalora.datadir import write_data_dir


class CorpusError(ValueError):
    """Bad or missing corpus input; the message names the file (and line) and what to do."""


@dataclass
class Utt:
    utt: str    # Kaldi id, starts with the speaker id so that sorting groups speakers
    path: str   # absolute audio path
    text: str   # raw transcript (normalization happens at scoring time only)
    spk: str
    lang: str   # Whisper language code


def safe_id(text: str) -> str:
    """Kaldi ids have no spaces; keep them to letters, digits, ``_``, ``-`` and ``.``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


def require_layout(corpus_dir, expected: Sequence[str], corpus: str, get_it: str) -> Path:
    """Check that ``corpus_dir`` holds every path of ``expected`` (relative, ``*`` allowed)."""
    if not corpus_dir:
        raise CorpusError(f"--corpus_dir is required: the folder of {corpus}, holding "
                          f"{', '.join(expected)}. {get_it}")
    root = Path(corpus_dir)
    if not root.is_dir():
        state = "is not a folder" if root.exists() else "does not exist"
        raise CorpusError(f"--corpus_dir {root} {state}. Expected the folder of {corpus}, "
                          f"holding {', '.join(expected)}. {get_it}")
    missing = [p for p in expected if not any(root.glob(p))]
    if missing:
        raise CorpusError(f"--corpus_dir {root} does not look like {corpus}: missing "
                          f"{', '.join(str(root / p) for p in missing)}. {get_it}")
    return root


def audio_seconds(path, where: str) -> float:
    """Duration from the file header (no decoding); errors name ``where`` (file:line)."""
    import soundfile

    try:
        info = soundfile.info(str(path))
    except Exception as e:  # libsndfile raises several types for unreadable files
        raise CorpusError(f"{where}: cannot read audio {path} ({e}); replace the file or "
                          "remove its line") from e
    if info.frames <= 0 or info.samplerate <= 0:
        raise CorpusError(f"{where}: audio {path} is empty; replace the file or remove its line")
    return info.frames / info.samplerate


def sample_hours(utts: Sequence[Utt], hours: float, seed: int,
                 seconds: Callable[[Utt], float]) -> List[Utt]:
    """A seeded subset of at most ``hours`` of audio (``hours <= 0``: everything).

    The utterances are sorted by id, shuffled with ``random.Random(seed)`` and taken in that
    order while they fit under the cap (one that does not fit is skipped, later shorter ones may
    still fit), so the same corpus, hours and seed always give the same subset, and durations
    are only read for the utterances visited. Stops once less than 0.5 s of the cap is left.
    """
    if hours <= 0:
        return list(utts)
    order = sorted(utts, key=lambda u: u.utt)
    random.Random(seed).shuffle(order)
    cap, total, chosen = hours * 3600.0, 0.0, []
    for u in order:
        if cap - total < 0.5:
            break
        d = seconds(u)
        if total + d <= cap:
            chosen.append(u)
            total += d
    return sorted(chosen, key=lambda u: u.utt)


def drop_speakers(utts: Iterable[Utt], speakers: set, what: str) -> List[Utt]:
    """Remove the utterances of ``speakers`` (those of the test/dev sets) from a training list."""
    utts = list(utts)
    kept = [u for u in utts if u.spk not in speakers]
    if len(kept) < len(utts):
        log(f"{what}: dropped {len(utts) - len(kept)} training utterances of "
            f"{len({u.spk for u in utts} & speakers)} speakers who are also in dev/test")
    return kept


def write_sets(out: Path, sets: Dict[str, List[Utt]]):
    """Write ``out/<set>/{wav.scp,text,utt2spk,spk2utt,utt2lang}``; every set is checked first
    (non-empty, unique ids), so a bad corpus leaves earlier data dirs as they were."""
    for name, utts in sets.items():
        if not utts:
            raise CorpusError(f"set {name!r} has no utterances; check the corpus and the options "
                              "(--hours, --langs, dev/test sizes)")
        ids = [u.utt for u in utts]
        if len(set(ids)) != len(ids):
            dup = sorted({i for i in ids if ids.count(i) > 1})[:3]
            raise CorpusError(f"set {name!r}: duplicate utterance ids {dup}; make file names or "
                              "speaker ids unique")
    for name, utts in sets.items():
        write_data_dir(out / name, {
            "wav.scp": {u.utt: u.path for u in utts},
            "text": {u.utt: " ".join(u.text.split()) for u in utts},
            "utt2spk": {u.utt: u.spk for u in utts},
            "utt2lang": {u.utt: u.lang for u in utts},
        })
        langs = sorted({u.lang for u in utts})
        log(f"{out / name}: {len(utts)} utterances, {len({u.spk for u in utts})} speakers, "
            f"languages {','.join(langs)}")


def log(message: str):
    print(message, file=sys.stderr, flush=True)


def main_wrapper(run: Callable[[], None]):
    """Run a reader's main: a ``CorpusError`` becomes ``error: ...`` and exit status 1."""
    try:
        run()
    except CorpusError as e:
        sys.exit(f"error: {e}")
