"""Stage 1 of egs2/zeroth_korean: Zeroth-Korean (OpenSLR 40; 51.6 h of read Korean, 105
training speakers, and 1.2 h, 10 other speakers, for test; 16 kHz FLAC).

``--corpus_dir`` is the unpacked ``zeroth_korean.tar.gz``, which holds
``train_data_01/003/<spk>/<spk>_003_<n>.flac`` with one ``<spk>_003.trans.txt`` per folder
(lines ``<utt> <transcript>``), and ``test_data_01/`` laid out the same way. Writes
``data/{train,dev,test}``: test is ``test_data_01`` whole; dev is all utterances of
``--dev_speakers`` training speakers picked with ``--seed``; train is a seeded subset of at most
``--hours`` hours of the other training speakers. No speaker is in two sets.
"""

import argparse
import random
from pathlib import Path
from typing import List

from espnet_lalora.corpus import (CorpusError, Utt, audio_seconds, drop_speakers, log,
                                  main_wrapper, require_layout, safe_id, sample_hours, write_sets)

GET_IT = ("Download zeroth_korean.tar.gz (about 10 GB) from https://www.openslr.org/40/ and "
          "unpack it.")


def read_folder(folder: Path) -> List[Utt]:
    utts = []
    for trans in sorted(folder.rglob("*.trans.txt")):
        try:
            lines = trans.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as e:
            raise CorpusError(f"{trans}: not valid UTF-8 ({e.reason}); unpack the corpus again")
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            name, _, text = line.strip().partition(" ")
            text = " ".join(text.split())
            if not text:
                raise CorpusError(f"{trans}:{number}: {name} has an empty transcript")
            flac = trans.parent / f"{name}.flac"
            if not flac.is_file():
                raise CorpusError(f"{trans}:{number}: {flac} not found; unpack the corpus again")
            spk = safe_id(name.split("_")[0])
            utts.append(Utt(f"{spk}-{safe_id(name)}", str(flac.resolve()), text, spk, "ko"))
    if not utts:
        raise CorpusError(f"{folder}: no *.trans.txt transcripts found. {GET_IT}")
    return utts


def prepare(corpus_dir, hours: float, seed: int, dev_speakers: int):
    root = require_layout(corpus_dir, ["train_data_01/*/*/*.trans.txt",
                                       "test_data_01/*/*/*.trans.txt"],
                          "Zeroth-Korean (OpenSLR 40)", GET_IT)
    train_all = read_folder(root / "train_data_01")
    test = read_folder(root / "test_data_01")
    speakers = sorted({u.spk for u in train_all})
    if len(speakers) <= dev_speakers:
        raise CorpusError(f"{root / 'train_data_01'}: {len(speakers)} speakers, not more than "
                          f"--dev_speakers {dev_speakers}; lower it")
    dev_spk = set(random.Random(seed).sample(speakers, dev_speakers))
    dev = [u for u in train_all if u.spk in dev_spk]
    rest = drop_speakers(train_all, dev_spk | {u.spk for u in test}, str(root))
    train = sample_hours(rest, hours, seed, lambda u: audio_seconds(u.path, u.path))
    log(f"Zeroth-Korean: train {len(train)} of {len(rest)} utterances (cap {hours:g} h, seed "
        f"{seed}), {len({u.spk for u in train})} speakers; dev {len(dev)} ({dev_speakers} "
        f"speakers); test {len(test)}")
    return {"train": train, "dev": dev, "test": test}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus_dir", default="", help="holds train_data_01/, test_data_01/")
    parser.add_argument("--hours", type=float, default=4.0, help="training hours (0: all)")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--dev_speakers", type=int, default=2,
                        help="training speakers held out as dev")
    parser.add_argument("--out", type=Path, default=Path("data"))
    args = parser.parse_args(argv)
    main_wrapper(lambda: write_sets(args.out, prepare(args.corpus_dir, args.hours, args.seed,
                                                      args.dev_speakers)))


if __name__ == "__main__":
    main()
