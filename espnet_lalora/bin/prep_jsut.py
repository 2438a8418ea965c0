"""Stage 1 of egs2/jsut: JSUT ``basic5000`` (one female speaker reading 5,000 Japanese
sentences, 48 kHz WAV; JSUT as a whole holds 10 h).

``--corpus_dir`` is the unpacked ``jsut_ver1.1/`` (or its ``basic5000/``), which holds
``basic5000/wav/BASIC5000_0001.wav`` ... and ``basic5000/transcript_utf8.txt`` with lines
``BASIC5000_0001:<kanji-kana text>``. Writes ``data/{train,dev,test}``: sorted by id, the last
``--test_utts`` utterances are test, the ``--dev_utts`` before them dev, and train is a seeded
subset of the rest of at most ``--hours`` hours. There is one speaker, so unlike the other
recipes train and test share it: the split measures sentences the model has not heard, not
speakers.
"""

import argparse
from pathlib import Path

from espnet_lalora.corpus import (CorpusError, Utt, audio_seconds, log, main_wrapper,
                                  require_layout, sample_hours, write_sets)

GET_IT = ("Get jsut_ver1.1.zip from https://sites.google.com/site/shinnosuketakamichi/"
          "publication/jsut (free for research; see its license) and unzip it.")
SPEAKER = "jsut"


def prepare(corpus_dir, hours: float, seed: int, dev_utts: int, test_utts: int):
    if corpus_dir and (Path(corpus_dir) / "transcript_utf8.txt").is_file():
        corpus_dir = Path(corpus_dir).parent  # given basic5000/ itself
    root = require_layout(corpus_dir, ["basic5000/transcript_utf8.txt", "basic5000/wav/*.wav"],
                          "JSUT (jsut_ver1.1, basic5000 subset)", GET_IT)
    base = root / "basic5000"
    transcript = base / "transcript_utf8.txt"
    utts, where = [], {}
    try:
        lines = transcript.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as e:
        raise CorpusError(f"{transcript}: not valid UTF-8 ({e.reason}); this reader wants "
                          "transcript_utf8.txt, not the Shift-JIS transcript") from e
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        name, sep, text = line.strip().partition(":")
        text = " ".join(text.split())
        if not sep or not name:
            raise CorpusError(f"{transcript}:{number}: expected 'BASIC5000_0001:text', got "
                              f"{line[:60]!r}")
        if not text:
            raise CorpusError(f"{transcript}:{number}: {name} has an empty transcript")
        wav = base / "wav" / f"{name}.wav"
        if not wav.is_file():
            raise CorpusError(f"{transcript}:{number}: {wav} not found; unzip the corpus again")
        where[name] = f"{transcript}:{number}"
        utts.append(Utt(f"{SPEAKER}-{name}", str(wav.resolve()), text, SPEAKER, "ja"))
    utts.sort(key=lambda u: u.utt)
    if len(utts) <= dev_utts + test_utts:
        raise CorpusError(f"{transcript}: {len(utts)} utterances, not more than --dev_utts "
                          f"{dev_utts} + --test_utts {test_utts}; lower them")
    test = utts[len(utts) - test_utts:]
    dev = utts[len(utts) - test_utts - dev_utts:len(utts) - test_utts]
    rest = utts[:len(utts) - test_utts - dev_utts]
    train = sample_hours(rest, hours, seed,
                         lambda u: audio_seconds(u.path, where[Path(u.path).stem]))
    log(f"JSUT basic5000: train {len(train)} of {len(rest)} (cap {hours:g} h, seed {seed}), "
        f"dev {len(dev)}, test {len(test)}")
    return {"train": train, "dev": dev, "test": test}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus_dir", default="", help="jsut_ver1.1/ (holds basic5000/)")
    parser.add_argument("--hours", type=float, default=4.0, help="training hours (0: all)")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--dev_utts", type=int, default=250)
    parser.add_argument("--test_utts", type=int, default=250)
    parser.add_argument("--out", type=Path, default=Path("data"))
    args = parser.parse_args(argv)
    main_wrapper(lambda: write_sets(args.out, prepare(args.corpus_dir, args.hours, args.seed,
                                                      args.dev_utts, args.test_utts)))


if __name__ == "__main__":
    main()
