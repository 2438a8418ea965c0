"""Import your own corpus as a Kaldi data dir (stage 1), without writing a data script.

Two inputs:

* ``--table FILE``: a TSV (``.tsv``/``.txt``, tab-separated) or CSV (``.csv``, quoting allowed)
  with one utterance a row: ``path<TAB>transcript[<TAB>speaker[<TAB>lang]]``. A first row
  ``path<TAB>transcript...`` is a header and is skipped. ``path`` is an audio file (any format
  stage 3 reads: wav, flac, mp3, ogg; any rate, any channels), relative to ``--audio_dir``
  (default: the table's folder) or absolute. Without a speaker column every utterance is its own
  speaker; without a lang column ``--lang`` applies.
* ``--kaldi DIR``: an existing Kaldi data dir (``wav.scp``, ``text``, ``utt2spk``, optional
  ``utt2lang``), checked and copied as it is; ``--lang`` fills in a missing ``utt2lang``. A
  ``wav.scp`` command (``cmd ... |``, a Kaldi pipe) would run in a shell at stage 3, so it is
  refused unless ``--allow_pipes true`` (only for a corpus you trust).
* ``--corpus_dir DIR``: one of the above per set: ``DIR/<set>.tsv``, ``DIR/<set>.csv`` or
  ``DIR/<set>/`` for each of ``--sets`` (train dev test), written to ``--out/<set>``.

Every row is checked before anything is written: the audio file exists and its header reads,
the transcript is not empty, the row has 2 to 4 columns, the language is a Whisper language.
Errors name ``file:line`` and exit 1; an earlier ``--out`` stays as it was.

Example: ``python -m espnet_lalora.bin.import_corpus --table my_corpus/train.tsv --lang ja
--out data/train``
"""

import argparse
import csv
from pathlib import Path
from typing import List

from espnet_lalora.corpus import (CorpusError, Utt, audio_seconds, main_wrapper, safe_id,
                                  write_sets)
from espnet_lalora.datadir import DataDirError, check_no_shell_commands, load_data_dir
from espnet_lalora.whisper_langs import check_language


def read_table(table: Path, audio_dir: Path, lang: str = "") -> List[Utt]:
    if not table.is_file():
        raise CorpusError(f"{table}: file not found")
    delimiter = "," if table.suffix.lower() == ".csv" else "\t"
    quoting = csv.QUOTE_MINIMAL if delimiter == "," else csv.QUOTE_NONE
    utts, seen, rows = [], {}, []
    try:
        with open(table, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f, delimiter=delimiter, quoting=quoting)
            for row in reader:  # line_num: the file's line, also after quoted line breaks
                rows.append((reader.line_num, row))
    except UnicodeDecodeError as e:
        raise CorpusError(f"{table}: not valid UTF-8 ({e.reason}); re-encode it as UTF-8") from e
    except csv.Error as e:
        raise CorpusError(f"{table}: cannot parse as {'CSV' if delimiter == ',' else 'TSV'} "
                          f"({e})") from e
    for number, row in rows:
        where = f"{table}:{number}"
        if not any(cell.strip() for cell in row):
            continue
        if (number, row[0].strip().lower()) == (1, "path"):
            continue  # header
        if not 2 <= len(row) <= 4:
            sep = "commas" if delimiter == "," else "tabs"
            raise CorpusError(f"{where}: {len(row)} columns; expected 2 to 4 separated by {sep}: "
                              "path, transcript[, speaker[, lang]]")
        path, text = row[0].strip(), " ".join(row[1].split())
        if not path:
            raise CorpusError(f"{where}: empty audio path in column 1")
        if not text:
            raise CorpusError(f"{where}: empty transcript for {path}; fill it in or remove the row")
        audio = Path(path) if Path(path).is_absolute() else audio_dir / path
        if not audio.is_file():
            raise CorpusError(f"{where}: audio file {audio} not found (paths are relative to "
                              f"{audio_dir}; see --audio_dir)")
        audio_seconds(audio, where)  # the header must read; decoding happens in stage 3
        row_lang = row[3].strip() if len(row) > 3 and row[3].strip() else lang
        if not row_lang:
            raise CorpusError(f"{where}: no language: add a 4th column (e.g. ja) or give --lang "
                              "(egs2/custom: --data_lang)")
        try:
            check_language(row_lang, where)
        except ValueError as e:
            raise CorpusError(str(e)) from e
        stem = safe_id(str(Path(path).with_suffix("")))
        spk = safe_id(row[2].strip()) if len(row) > 2 and row[2].strip() else stem
        utt = f"{spk}-{stem}" if spk != stem else stem
        if utt in seen:
            raise CorpusError(f"{where}: {path} gives the same utterance id {utt!r} as line "
                              f"{seen[utt]}; each audio file may appear once")
        seen[utt] = number
        utts.append(Utt(utt, str(audio.resolve()), text, spk, row_lang))
    if not utts:
        raise CorpusError(f"{table}: no utterances (an empty table)")
    return utts


PIPES_HINT = "give --allow_pipes true (egs2/custom: ./run.sh --allow_pipes true)"


def read_kaldi(src: Path, lang: str = "", allow_pipes: bool = False) -> List[Utt]:
    """A checked Kaldi data dir; relative audio paths are made absolute (looked up from the
    current folder, Kaldi's convention, then from the data dir's parent)."""
    if (src / "segments").is_file():
        raise CorpusError(f"{src}/segments: segmented recordings are not supported; cut the "
                          "segments into files (e.g. with sox) and list those in wav.scp")
    try:
        files = load_data_dir(src)
        if not allow_pipes:
            check_no_shell_commands(src / "wav.scp", files["wav.scp"], PIPES_HINT)
    except DataDirError as e:
        raise CorpusError(str(e)) from e
    langs = files.get("utt2lang")
    if langs is None and not lang:
        raise CorpusError(f"{src}/utt2lang: missing; add it (lines 'utt lang') or give --lang")
    utts = []
    for utt, spec in files["wav.scp"].items():
        utt_lang = langs[utt] if langs else lang
        try:
            check_language(utt_lang, f"{src}/utt2lang (utterance {utt})")
        except ValueError as e:
            raise CorpusError(str(e)) from e
        if not (spec.endswith("|") or Path(spec).is_absolute()):
            found = [b / spec for b in (Path.cwd(), src.parent) if (b / spec).is_file()]
            if not found:
                raise CorpusError(f"{src}/wav.scp: utterance {utt}: audio file {spec} not found "
                                  f"(relative paths are looked up from {Path.cwd()} and "
                                  f"{src.parent})")
            spec = str(found[0].resolve())
        utts.append(Utt(utt, spec, files["text"][utt], files["utt2spk"][utt], utt_lang))
    return utts


def read_set(corpus_dir: Path, name: str, lang: str = "", allow_pipes: bool = False
             ) -> List[Utt]:
    """``<corpus_dir>/<name>.tsv``, ``.csv`` or Kaldi dir ``<name>/``, whichever exists."""
    for suffix in (".tsv", ".csv"):
        if (corpus_dir / f"{name}{suffix}").is_file():
            return read_table(corpus_dir / f"{name}{suffix}", corpus_dir, lang)
    if (corpus_dir / name / "wav.scp").is_file():
        return read_kaldi(corpus_dir / name, lang, allow_pipes)
    raise CorpusError(f"--corpus_dir {corpus_dir}: no {name} set: looked for {name}.tsv, "
                      f"{name}.csv and {name}/wav.scp. Put a table (path<TAB>transcript"
                      "[<TAB>speaker<TAB>lang]) or a Kaldi data dir there; see the README, "
                      "'Your own corpus'")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--table", type=Path, help="TSV/CSV: path, transcript[, speaker[, lang]]")
    source.add_argument("--kaldi", type=Path, help="an existing Kaldi data dir")
    source.add_argument("--corpus_dir", type=Path, help="a folder with one table or Kaldi dir "
                        "per set (--sets): <set>.tsv, <set>.csv or <set>/; writes <out>/<set>")
    parser.add_argument("--sets", default="train dev test", help="sets read with --corpus_dir")
    parser.add_argument("--audio_dir", type=Path, help="base of relative paths (default: the "
                        "table's folder)")
    parser.add_argument("--lang", default="", help="language of rows without a lang column")
    parser.add_argument("--allow_pipes", choices=["true", "false"], default="false",
                        help="accept Kaldi wav.scp commands ('cmd ... |'), which stage 3 runs in "
                        "a shell; only for a corpus you trust")
    parser.add_argument("--out", required=True, type=Path,
                        help="data dir to write (with --corpus_dir: the folder of the sets)")
    args = parser.parse_args(argv)
    allow_pipes = args.allow_pipes == "true"

    def run():
        # Every set is read and checked before any is written.
        if args.corpus_dir:
            if not args.corpus_dir.is_dir():
                raise CorpusError(f"--corpus_dir {args.corpus_dir}: not a folder; it should "
                                  "hold train.tsv (or .csv, or a Kaldi dir train/), dev..., "
                                  "test...; see the README, 'Your own corpus'")
            sets = {s: read_set(args.corpus_dir, s, args.lang, allow_pipes)
                    for s in args.sets.split()}
            write_sets(args.out, sets)
        elif args.kaldi:
            utts = read_kaldi(args.kaldi, args.lang, allow_pipes)
            write_sets(args.out.parent, {args.out.name: utts})
        else:
            utts = read_table(args.table, args.audio_dir or args.table.parent, args.lang)
            write_sets(args.out.parent, {args.out.name: utts})

    main_wrapper(run)


if __name__ == "__main__":
    main()
