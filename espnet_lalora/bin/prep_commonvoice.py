"""Stage 1 of egs2/commonvoice_lr: Mozilla Common Voice, a low-resource multilingual set.

``--corpus_dir`` is a Common Voice release folder (e.g. ``cv-corpus-17.0-2024-03-15/``) holding
one folder per language (``ja/``, ``ko/``, ``zh-CN/``, ...), each with ``clips/*.mp3`` and
``train.tsv``, ``dev.tsv``, ``test.tsv`` (columns by header: ``client_id``, ``path``,
``sentence``, ...). Writes ``data/{train,dev,test}`` over all ``--langs``:

* train: a seeded subset of each language's official ``train.tsv`` of at most ``--hours`` hours
  (durations from ``clip_durations.tsv`` where the release has it, else from each mp3's header,
  read only for the clips the sampler visits), without any speaker (``client_id``) of that
  language's dev or test set;
* dev, test: the official splits, whole.

Speaker ids are ``<lang>_<first 16 hex digits of client_id>``; ``utt2lang`` holds the Whisper
code (the part of the locale before ``-``: ``zh-CN`` -> ``zh``).
"""

import argparse
import csv
from pathlib import Path
from typing import Dict, List, Tuple

from espnet_lalora.corpus import (CorpusError, Utt, audio_seconds, drop_speakers, log,
                                  main_wrapper, require_layout, safe_id, sample_hours, write_sets)
from espnet_lalora.whisper_langs import check_language

GET_IT = ("Download the release's language archives from https://commonvoice.mozilla.org/"
          "datasets (free, after accepting the terms; recent releases are distributed through "
          "Mozilla Data Collective, linked there) and unpack them side by side, so that "
          "<corpus_dir>/<lang>/train.tsv exists.")
SPLITS = ("train.tsv", "dev.tsv", "test.tsv")


def whisper_code(locale: str) -> str:
    code = locale.split("-")[0]
    try:
        check_language(code, f"--langs {locale}")
    except ValueError as e:
        raise CorpusError(str(e)) from e
    return code


def read_split(tsv: Path, clips: Path, lang: str) -> List[Tuple[Utt, int]]:
    """``(Utt, line number)`` for every row with a sentence; a missing clip is an error."""
    with open(tsv, encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, [])
        missing = [c for c in ("client_id", "path", "sentence") if c not in header]
        if missing:
            raise CorpusError(f"{tsv}:1: header lacks {', '.join(missing)}; a Common Voice TSV "
                              "starts with client_id, path, sentence, ...")
        col = {name: header.index(name) for name in ("client_id", "path", "sentence")}
        out, empty = [], 0
        for number, row in enumerate(reader, 2):
            if not row:
                continue
            if len(row) <= max(col.values()):
                raise CorpusError(f"{tsv}:{number}: {len(row)} columns, the header has "
                                  f"{len(header)}; the file is damaged, unpack it again")
            text = " ".join(row[col["sentence"]].split())
            if not text:
                empty += 1
                continue
            clip = clips / row[col["path"]]
            if not clip.is_file():
                raise CorpusError(f"{tsv}:{number}: clip {clip} not found; the language archive "
                                  "is incomplete, unpack it again")
            spk = f"{lang}_{safe_id(row[col['client_id']])[:16]}"
            utt = f"{spk}-{safe_id(clip.stem)}"
            out.append((Utt(utt, str(clip.resolve()), text, spk, lang), number))
        if empty:
            log(f"{tsv}: skipped {empty} rows without a sentence")
    return out


def read_durations(folder: Path) -> Dict[str, float]:
    """``clip_durations.tsv`` (``clip<TAB>duration[ms]``) where the release has it."""
    path = folder / "clip_durations.tsv"
    if not path.is_file():
        return {}
    out = {}
    with open(path, encoding="utf-8") as f:
        next(f, None)
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) >= 2 and parts[1].strip().isdigit():
                out[parts[0]] = int(parts[1]) / 1000.0
    return out


def prepare(corpus_dir, locales: List[str], hours: float, seed: int):
    codes = [whisper_code(loc) for loc in locales]  # bad codes fail before any file is read
    if not locales:
        raise CorpusError("--langs is empty; give Common Voice locales, e.g. --langs ja,ko")
    root = require_layout(corpus_dir, ["*/train.tsv", "*/dev.tsv", "*/test.tsv", "*/clips"],
                          "a Common Voice release (one folder per language)", GET_IT)
    sets = {"train": [], "dev": [], "test": []}
    for locale, code in zip(locales, codes):
        folder = root / locale
        if not folder.is_dir():
            present = sorted(p.name for p in root.iterdir() if (p / "train.tsv").is_file())
            raise CorpusError(f"--langs {locale}: {folder} not found (languages present in "
                              f"{root}: {', '.join(present) or 'none'}). {GET_IT}")
        for split in SPLITS + ("clips",):
            if not (folder / split).exists():
                raise CorpusError(f"{folder / split} not found: a Common Voice language folder "
                                  f"holds clips/ and {', '.join(SPLITS)}. {GET_IT}")
        split_utts = {s: read_split(folder / s, folder / "clips", code) for s in SPLITS}
        held_out = {u.spk for s in ("dev.tsv", "test.tsv") for u, _ in split_utts[s]}
        train = drop_speakers((u for u, _ in split_utts["train.tsv"]), held_out, str(folder))
        line = {u.utt: n for u, n in split_utts["train.tsv"]}
        known = read_durations(folder)

        def seconds(u: Utt) -> float:
            name = Path(u.path).name
            if name in known:
                return known[name]
            return audio_seconds(u.path, f"{folder / 'train.tsv'}:{line[u.utt]}")

        chosen = sample_hours(train, hours, seed, seconds)
        total = sum(seconds(u) for u in chosen)
        log(f"{locale}: train {len(chosen)} of {len(train)} utterances ({total / 3600:.2f} h = "
            f"{total:.0f} s, cap "
            f"{hours:g} h, seed {seed}), {len({u.spk for u in chosen})} speakers; dev "
            f"{len(split_utts['dev.tsv'])}, test {len(split_utts['test.tsv'])}")
        sets["train"] += chosen
        sets["dev"] += [u for u, _ in split_utts["dev.tsv"]]
        sets["test"] += [u for u, _ in split_utts["test.tsv"]]
    return sets


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus_dir", default="", help="the release folder (holds <lang>/)")
    parser.add_argument("--langs", default="ja,ko", help="comma-separated Common Voice locales")
    parser.add_argument("--hours", type=float, default=4.0,
                        help="training hours per language (0: the whole train.tsv)")
    parser.add_argument("--seed", type=int, default=2024, help="seed of the training subset")
    parser.add_argument("--out", type=Path, default=Path("data"))
    args = parser.parse_args(argv)
    locales = [x for x in args.langs.split(",") if x]
    main_wrapper(lambda: write_sets(args.out, prepare(args.corpus_dir, locales, args.hours,
                                                      args.seed)))


if __name__ == "__main__":
    main()
