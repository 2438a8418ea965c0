"""Stage 1 of egs2/asterisk (and mini_multi's real test set): the Asterisk telephone prompts, real
recorded speech by professional voices, from Debian's ``asterisk-core-sounds-<lang>`` (transcripts)
and ``asterisk-core-sounds-<lang>-wav`` (8 kHz 16-bit WAV) packages, CC-BY-SA 3.0.

``--corpus_dir`` is the root the packages are installed under (``/``: ``tools/install.sh``
installs them) or a folder they were unpacked into with ``dpkg-deb -x``; it holds
``usr/share/asterisk/sounds/<voice>/<prompt>.wav`` and
``usr/share/doc/asterisk-core-sounds-<lang>/core-sounds-<lang>.txt.gz`` (lines ``prompt: text``).

Which prompts are kept: a transcript is trusted when it passes every rule below; the others are
listed, with the rule that dropped them, in ``<out>/excluded.tsv`` (the recipe commits its own
copy, ``local/excluded.tsv``, and a test checks that the rules still give it):

- ``no audio``: the transcript names a prompt the package has no WAV of (or it is empty);
- ``not speech``: ``[...]`` (a tone), or a text with ``(...)`` or ``<...>`` (a description such as
  "(10 seconds of silence)" or "<beep ascending>", not the words spoken), or an empty text;
- ``digits``: a numeral in the text; the voices say numbers as words, and how ("1" as "one",
  "first" or "uno") the text does not tell;
- ``rate``: letters per second of speech (leading and trailing silence trimmed) more than
  ``RATE_HIGH`` times the language's median, or below it by more than ``RATE_LOW``: the text
  holds more, or less, than the recording says (e.g. Italian "un suono beep" for a beep);
- ``listed``: in ``KNOWN_MISMATCHES`` below, for mismatches found by reading that no rule catches.

A speaker-shift test set (``--sets ...,shift=test_shift``): the test split's prompts read by a
second voice (``--test_per_lang`` takes its own seeded subset), from Debian's ``asterisk-prompt-es-co`` (Colombian Spanish, GSM, GPL-2),
``asterisk-prompt-fr-armelle`` (French, GSM, BSD-like) and ``asterisk-prompt-it-menardi-wav``
(Italian, CC-BY-SA 3.0). They conflict with the core packages as installed packages (the same prompt
paths), so ``tools/install.sh`` unpacks them into ``--second_dir``. Their text is the core
transcript of the same prompt name, trusted when:

- ``shift: no recording``: the second voice has the prompt at all;
- ``shift: duration``: its speech (silence trimmed) lasts, relative to the core recording, within
  ``SHIFT_BAND`` of that voice's median ratio over every prompt both voices read: a different
  wording (an added or dropped sentence, another phrase) changes the length. Rewordings of the same
  length pass this rule; nothing better can be stated without listening, and no model is asked.

Splits, by prompt text: every distinct text (normalized) of a language goes wholly to train, dev
or test, by a seeded hash of the text (``--dev_share``, ``--test_share``), so no text is shared
across splits and a language's split does not depend on the other languages. ``--train_per_lang``
keeps a seeded subset of training prompts (the low-resource knob), ``--dev_per_lang`` and
``--test_per_lang`` of dev and test prompts (small runs). Nothing here is chosen by how a model transcribes it.
"""

import argparse
import gzip
import hashlib
import random
import re
import statistics
from pathlib import Path

import numpy as np

from espnet_lalora.corpus import CorpusError, Utt, log, main_wrapper, write_sets
from espnet_lalora.text_norm import normalize
from espnet_lalora.whisper_weights import cache_dir

VOICES = {"en": "en_US_f_Allison", "es": "es_MX_f_Allison", "fr": "fr_CA_f_June",
          "it": "it_IT_m_Carlo", "ru": "ru_RU_f_IvrvoiceRU"}
# lang: (Debian package, folder under usr/share/asterisk/sounds, speaker tag)
SECOND_VOICES = {"es": ("asterisk-prompt-es-co", "es", "es_co"),
                 "fr": ("asterisk-prompt-fr-armelle", "fr", "fr_armelle"),
                 "it": ("asterisk-prompt-it-menardi-wav", "it_IT_f_Menardi", "it_menardi")}
SHIFT_BAND = 1.3
RATE_HIGH, RATE_LOW = 1.8, 2.5
# (lang, prompt): why its transcript is not what the voice says (found by reading the lists)
KNOWN_MISMATCHES = {}
SILENCE_DB = 35  # trimmed at both ends: frames this far below the loudest one
INSTALL = ("install the packages (bash tools/install.sh does: apt-get install "
           "asterisk-core-sounds-{lang} asterisk-core-sounds-{lang}-wav), or unpack both with "
           "dpkg-deb -x into one folder and give it as --corpus_dir")


def transcript_path(root: Path, lang: str) -> Path:
    return root / f"usr/share/doc/asterisk-core-sounds-{lang}/core-sounds-{lang}.txt.gz"


def read_transcript(root: Path, lang: str):
    """[(prompt, text, 'file:line')] of one language's transcript file."""
    path = transcript_path(root, lang)
    if not path.is_file():
        raise CorpusError(f"{path}: not found (the transcripts of asterisk-core-sounds-{lang}); "
                          + INSTALL.format(lang=lang))
    out = []
    with gzip.open(path, "rt", encoding="utf-8-sig") as f:
        for number, line in enumerate(f, 1):
            line = line.strip().lstrip("\ufeff")
            if not line or line.startswith(";"):
                continue
            prompt, sep, text = line.partition(":")
            if not sep or not prompt.strip():
                raise CorpusError(f"{path}:{number}: expected 'prompt: text', got {line[:60]!r}")
            out.append((prompt.strip(), " ".join(text.split()), f"{path}:{number}"))
    return out


def read_recording(path: Path):
    """(mono float32 audio, rate) of a WAV or a raw GSM 06.10 file (sox decodes GSM)."""
    import io
    import subprocess

    import soundfile

    source = str(path)
    if path.suffix == ".gsm":
        result = subprocess.run(["sox", source, "-t", "wav", "-"], capture_output=True)
        if result.returncode != 0:
            raise CorpusError(f"{path}: sox cannot decode it: {result.stderr.decode()[-200:]}")
        source = io.BytesIO(result.stdout)
    audio, rate = soundfile.read(source, dtype="float32", always_2d=True)
    return audio.mean(axis=1), rate


def speech_seconds(wav: Path) -> float:
    """Duration without the leading and trailing silence (frames of 20 ms more than SILENCE_DB
    below the loudest frame)."""
    audio, rate = read_recording(wav)
    frame = max(1, rate // 50)
    n = len(audio) // frame
    if n == 0:
        return 0.0
    energy = (audio[:n * frame].reshape(n, frame) ** 2).mean(axis=1) + 1e-12
    db = 10 * np.log10(energy)
    voiced = np.flatnonzero(db > db.max() - SILENCE_DB)
    return (voiced[-1] - voiced[0] + 1) * frame / rate


def letters(text: str) -> int:
    return sum(ch.isalpha() for ch in text)


def check_language(root: Path, lang: str, known: dict = KNOWN_MISMATCHES):
    """(kept [(prompt, text, wav)], excluded [(prompt, reason)]) of one language."""
    sounds = root / "usr/share/asterisk/sounds" / VOICES[lang]
    if not sounds.is_dir():
        raise CorpusError(f"{sounds}: not found (the recordings of asterisk-core-sounds-"
                          f"{lang}-wav); " + INSTALL.format(lang=lang))
    candidates, excluded, seen = [], [], set()
    for prompt, text, where in read_transcript(root, lang):
        wav = sounds / f"{prompt}.wav"
        if prompt in seen:
            excluded.append((f"{prompt} ({where})", "listed twice: the first line is kept"))
            continue
        seen.add(prompt)
        if (lang, prompt) in known:
            excluded.append((prompt, f"listed: {known[(lang, prompt)]}"))
        elif not text or re.search(r"^\[|\(.*\)|<.*>", text):
            excluded.append((prompt, "not speech: " + (text or "empty text")))
        elif not wav.is_file() or wav.stat().st_size <= 44:
            excluded.append((prompt, f"no audio: {wav.name} missing or empty"))
        elif re.search(r"\d", text):
            excluded.append((prompt, "digits: the spoken form of the numeral is unknown"))
        else:
            seconds = speech_seconds(wav)
            if seconds <= 0:
                excluded.append((prompt, "no audio: silent"))
            else:
                candidates.append((prompt, text, wav, letters(text) / seconds))
    if not candidates:
        raise CorpusError(f"{sounds}: no prompt of {lang} passed the checks")
    median = statistics.median(rate for *_, rate in candidates)
    kept = []
    for prompt, text, wav, rate in candidates:
        if rate > RATE_HIGH * median or rate < median / RATE_LOW:
            excluded.append((prompt, f"rate: {rate:.1f} letters/s of speech, the language's "
                                     f"median {median:.1f}"))
        else:
            kept.append((prompt, text, wav))
    return kept, excluded


def second_voice(second_root: Path, lang: str, kept, test_prompts, audio_dir: Path):
    """(utts, excluded [(prompt, reason)]) of the test prompts ``test_prompts`` read by the
    language's second voice; ``kept``: every core prompt that passed the rules, for the median."""
    package, folder, tag = SECOND_VOICES[lang]
    sounds = second_root / "usr/share/asterisk/sounds" / folder
    if not sounds.is_dir():
        raise CorpusError(f"{sounds}: not found (the second voice of {lang}, {package}); run bash "
                          f"tools/install.sh, which unpacks it there, or apt-get download "
                          f"{package} and dpkg-deb -x it into a folder given as --second_dir")
    ratios, excluded = {}, []
    for prompt, _, core_wav in kept:
        found = [sounds / f"{prompt}{ext}" for ext in (".wav", ".gsm")]
        found = [f for f in found if f.is_file() and f.stat().st_size > 44]
        if found:
            ratios[prompt] = (speech_seconds(found[0]) / speech_seconds(core_wav), found[0])
    if not ratios:
        raise CorpusError(f"{sounds}: none of the {lang} prompts is there")
    median = statistics.median(r for r, _ in ratios.values())
    spk = f"{lang}_{tag}"
    utts = []
    for prompt, text in test_prompts:
        if prompt not in ratios:
            excluded.append((f"{prompt} ({tag})", "shift: no recording"))
            continue
        ratio, path = ratios[prompt]
        if not 1 / SHIFT_BAND <= ratio / median <= SHIFT_BAND:
            excluded.append((f"{prompt} ({tag})", f"shift: duration {ratio:.2f} times the core "
                                                  f"recording's, the voice's median {median:.2f}"))
            continue
        if path.suffix == ".gsm":  # stage 3 reads WAV: decoded once, here
            import soundfile

            wav = audio_dir / tag / f"{prompt.replace('/', '_')}.wav"
            wav.parent.mkdir(parents=True, exist_ok=True)
            soundfile.write(str(wav), *read_recording(path), subtype="PCM_16")
            path = wav
        utts.append(Utt(f"{spk}-{prompt.replace('/', '_')}", str(path.resolve()), text, spk, lang))
    log(f"asterisk {lang} second voice ({package}): {len(utts)} of {len(test_prompts)} test "
        f"prompts kept (median duration ratio {median:.2f})")
    return utts, excluded


def split_of(text: str, lang: str, seed: int, dev_share: float, test_share: float) -> str:
    digest = hashlib.sha1(f"{seed}:{lang}:{normalize(text, lang)}".encode()).hexdigest()
    u = int(digest[:12], 16) / 16 ** 12
    return "test" if u < test_share else "dev" if u < test_share + dev_share else "train"


def subset(utts, count: int, seed: str):
    """A seeded subset of ``count`` utterances (0: all), in id order."""
    utts = sorted(utts, key=lambda u: u.utt)
    if count and count < len(utts):
        utts = sorted(random.Random(seed).sample(utts, count), key=lambda u: u.utt)
    return utts


def prepare(root: Path, langs, seed: int, dev_share: float, test_share: float,
            train_per_lang: int = 0, test_per_lang: int = 0, dev_per_lang: int = 0,
            second_root: Path = None, audio_dir: Path = None):
    """The splits; with ``second_root`` also ``shift``, the test prompts by a second voice."""
    sets = {"train": [], "dev": [], "test": [], "shift": []}
    excluded = {}
    for lang in langs:
        kept, dropped = check_language(root, lang)
        spk = f"{lang}_{VOICES[lang]}"
        by_split = {"train": [], "dev": [], "test": []}
        for prompt, text, wav in kept:
            utt = f"{spk}-{prompt.replace('/', '_')}"
            by_split[split_of(text, lang, seed, dev_share, test_share)].append(
                Utt(utt, str(wav.resolve()), text, spk, lang))
        if second_root is not None and lang in SECOND_VOICES:  # the whole test split's prompts
            prompt_of = {f"{spk}-{p.replace('/', '_')}": p for p, _, _ in kept}
            shift, dropped_shift = second_voice(
                second_root, lang, kept, [(prompt_of[u.utt], u.text) for u in by_split["test"]],
                audio_dir)
            sets["shift"] += subset(shift, test_per_lang, f"{seed}-{lang}-shift")
            excluded.update({f"{lang}\t{prompt}": why for prompt, why in dropped_shift})
        by_split["train"] = subset(by_split["train"], train_per_lang, f"{seed}-{lang}")
        by_split["test"] = subset(by_split["test"], test_per_lang, f"{seed}-{lang}-test")
        by_split["dev"] = subset(by_split["dev"], dev_per_lang, f"{seed}-{lang}-dev")
        for name, utts in by_split.items():
            sets[name] += sorted(utts, key=lambda u: u.utt)
        excluded.update({f"{lang}\t{prompt}": reason for prompt, reason in dropped})
        log(f"asterisk {lang}: {len(kept)} prompts kept ({len(dropped)} excluded); train "
            f"{len(by_split['train'])}, dev {len(by_split['dev'])}, test {len(by_split['test'])}")
    return sets, excluded


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus_dir", type=Path, default=Path("/"),
                        help="root the packages are installed or unpacked under")
    parser.add_argument("--langs", default=",".join(VOICES))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dev_share", type=float, default=0.1)
    parser.add_argument("--test_share", type=float, default=0.2)
    parser.add_argument("--train_per_lang", type=int, default=0,
                        help="a seeded subset of training prompts per language (0: all)")
    parser.add_argument("--test_per_lang", type=int, default=0,
                        help="a seeded subset of test prompts per language (0: all)")
    parser.add_argument("--dev_per_lang", type=int, default=0,
                        help="a seeded subset of dev prompts per language (0: all)")
    parser.add_argument("--sets", default="train,dev,test",
                        help="which sets to write, comma-separated, optionally renamed: "
                             "test=test_real writes the test split as data/test_real; shift: "
                             "the test prompts by a second voice (es, fr, it)")
    parser.add_argument("--second_dir", type=Path, default=cache_dir() / "asterisk-second",
                        help="where the second voices' packages are unpacked (tools/install.sh)")
    parser.add_argument("--audio_dir", type=Path, default=Path("downloads/asterisk_second"),
                        help="where the second voices' GSM prompts are written as WAV")
    parser.add_argument("--out", type=Path, default=Path("data"))
    args = parser.parse_args(argv)

    def run():
        langs = [l for l in args.langs.split(",") if l]
        for lang in langs:
            if lang not in VOICES:
                raise CorpusError(f"--langs: no Asterisk voice for {lang!r}; choose from "
                                  f"{','.join(VOICES)}")
        if not args.corpus_dir.is_dir():
            raise CorpusError(f"--corpus_dir {args.corpus_dir} does not exist")
        if not (0 < args.test_share and 0 < args.dev_share and args.dev_share + args.test_share < 1):
            raise CorpusError("--dev_share and --test_share must be positive and sum below 1")
        splits = [item.partition("=") for item in args.sets.split(",")]
        for split, _, _ in splits:
            if split not in ("train", "dev", "test", "shift"):
                raise CorpusError(f"--sets: unknown split {split!r}; choose from train, dev, "
                                  "test, shift")
        shift = any(split == "shift" for split, _, _ in splits)
        if shift and not set(langs) & set(SECOND_VOICES):
            log(f"--sets shift: none of --langs {args.langs} has a second voice "
                f"({','.join(SECOND_VOICES)}): no speaker-shift set")
            splits = [s for s in splits if s[0] != "shift"]
            shift = False
        sets, excluded = prepare(args.corpus_dir, langs, args.seed, args.dev_share,
                                 args.test_share, args.train_per_lang, args.test_per_lang,
                                 args.dev_per_lang, args.second_dir if shift else None,
                                 args.audio_dir)
        wanted = {name or split: sets[split] for split, _, name in splits}
        write_sets(args.out, wanted)
        (args.out / "excluded.tsv").write_text(
            "# lang\tprompt\treason (python -m espnet_lalora.bin.prep_asterisk)\n"
            + "".join(f"{key}\t{reason}\n" for key, reason in sorted(excluded.items())),
            encoding="utf-8")

    main_wrapper(run)


if __name__ == "__main__":
    main()
