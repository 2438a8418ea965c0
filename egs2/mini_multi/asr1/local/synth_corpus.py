#!/usr/bin/env python3
"""Synthesize the embedded multilingual corpus: Japanese (kana), Korean, English, Spanish.

Training, dev and `test` sentences come from small grammars written for this project (time +
subject + place + action), so thousands of distinct sentences exist; each is used once, so
train, dev and test never share a sentence. The last place and the last action of each language
never occur in training: half of the dev and test sentences contain one of them. Each language
has four espeak-ng speakers (voice variant, rate, pitch); speaker 4 is held out for dev and test.

Three more test sets move away from the training speech, one step each, so that their CER
against `test` says what a method does with speech unlike its training data:

- `test_free`: sentences the grammar cannot produce (local/free_sentences.py), espeak-ng
  speaker 4: other words and constructions, same voice as `test`.
- `test_room`: the first `test` sentences again, read by two espeak-ng voice variants never in
  training (faster and slower, higher and lower than any training speaker), reverberated (sox
  `reverb`) and mixed with low-pass noise at ROOM_SNR_DB: same text as `test`, other voices and
  channel.
- `test_engine`: the first `test` sentences of Japanese and English read by another
  synthesizer, Open JTalk (HTS voice "Mei") and flite (four voices): same text, other engine.
  Korean and Spanish have no second engine here.

Audio is each engine's own WAV (22.05, 48 or 16 kHz): stage 3 resamples it.
"""

import argparse
import itertools
import random
import shutil
import subprocess
import sys
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import lfilter

from espnet_lalora.datadir import write_data_dir
from espnet_lalora.progress import Progress
from espnet_lalora.whisper_weights import cache_dir

sys.path.insert(0, str(Path(__file__).resolve().parent))
from free_sentences import FREE_SENTENCES  # noqa: E402

# Japanese is kana only (espeak-ng's Japanese voice cannot read kanji) and avoids the particles
# は and へ, which it reads as "ha" and "he". Phrases are spoken with spaces, written without.
GRAMMARS = {
    "ja": dict(
        voice="ja", join="", end="。",
        time=["きのう", "けさ", "せんしゅう", "ゆうべ", "おととい", "さっき"],
        subject=["わたしが", "ともだちが", "せんせいが", "いもうとが", "おとうさんが", "となりのひとが",
                 "がくせいが", "こどもたちが"],
        place=["こうえんで", "えきで", "としょかんで", "うみで", "がっこうで", "みせで", "にわで",
               "だいどころで"],
        action=["ほんをよみました", "おちゃをのみました", "てがみをかきました", "さかなをたべました",
                "しゃしんをとりました", "うたをうたいました", "くるまをあらいました",
                "へやをそうじしました"],
        order=["time", "subject", "place", "action"]),
    "ko": dict(
        voice="ko", join=" ", end=".",
        time=["어제", "오늘 아침", "지난주에", "어젯밤에", "그저께", "방금"],
        subject=["제 친구가", "선생님이", "동생이", "아버지가", "학생들이", "이웃이", "어머니가",
                 "아이들이"],
        place=["공원에서", "역에서", "도서관에서", "바다에서", "학교에서", "가게에서", "마당에서",
               "부엌에서"],
        action=["책을 읽었습니다", "차를 마셨습니다", "편지를 썼습니다", "생선을 먹었습니다",
                "사진을 찍었습니다", "노래를 불렀습니다", "자동차를 닦았습니다", "방을 청소했습니다"],
        order=["time", "subject", "place", "action"]),
    "en": dict(
        voice="en", join=" ", end=".",
        time=["Yesterday", "This morning", "Last week", "Last night", "On Sunday", "A moment ago"],
        subject=["my friend", "the teacher", "my sister", "our father", "the students",
                 "a neighbor", "my mother", "the children"],
        action=["read a book", "drank some tea", "wrote a letter", "ate fresh fish",
                "took a photo", "sang a song", "washed the car", "cleaned the room"],
        place=["in the park", "at the station", "in the library", "by the sea", "at school",
               "in the shop", "in the garden", "in the kitchen"],
        order=["time", "subject", "action", "place"]),
    "es": dict(
        voice="es", join=" ", end=".",
        time=["Ayer", "Esta mañana", "La semana pasada", "Anoche", "El domingo",
              "Hace un momento"],
        subject=["mi amigo", "la maestra", "mi hermana", "nuestro padre", "el estudiante",
                 "una vecina", "mi madre", "el niño"],
        action=["leyó un libro", "bebió un té", "escribió una carta", "comió pescado",
                "tomó una foto", "cantó una canción", "lavó el coche", "limpió la habitación"],
        place=["en el parque", "en la estación", "en la biblioteca", "junto al mar",
               "en la escuela", "en la tienda", "en el jardín", "en la cocina"],
        order=["time", "subject", "action", "place"]),
}

# (espeak-ng variant, words per minute, pitch 0-99); speaker 4 is never in training.
SPEAKERS = {1: ("m1", 150, 45), 2: ("f2", 165, 62), 3: ("m3", 140, 35), 4: ("f4", 155, 55)}
# test_room's voices: variants, rates and pitches outside the training speakers'.
ROOM_SPEAKERS = {5: ("klatt3", 180, 25), 6: ("Annie", 125, 80)}
ROOM_SNR_DB = 10  # speech-to-noise ratio of test_room, over the speech's active samples
# test_engine: the other synthesizer of each language that has one here.
ENGINE_VOICES = {"ja": ["mei"], "en": ["slt", "rms", "awb", "kal16"]}
JTALK_DICT = "/var/lib/mecab/dic/open-jtalk/naist-jdic"  # Debian open-jtalk-mecab-naist-jdic
DEFAULT_EXTRA = 5  # utterances per language of each extra test set unless asked otherwise
# (run.sh's decoding stays within its time budget; bench/sweep.py asks for 40)


HELD_OUT_SLOTS = ("place", "action")  # their last entry is never in training


def sentences(lang: str, seed: int):
    """Two shuffled streams of (written text, spoken text): sentences made of training words
    only, and sentences with at least one held-out word."""
    g = GRAMMARS[lang]
    held_out = {g[slot][-1] for slot in HELD_OUT_SLOTS}
    combos = list(itertools.product(*(g[slot] for slot in g["order"])))
    random.Random(f"{seed}-{lang}").shuffle(combos)

    def render(phrases):
        written = g["join"].join(phrases) + g["end"]
        return written[0].upper() + written[1:], " ".join(phrases) + g["end"]

    seen = (render(c) for c in combos if not held_out & set(c))
    novel = (render(c) for c in combos if held_out & set(c))
    return seen, novel


def _espeak(path, voice, speed, pitch, text):
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(path),
                    text], check=True, capture_output=True)


def add_noise(audio, snr_db, seed):
    """audio plus low-pass (one-pole) Gaussian noise at snr_db below the speech's power, measured
    over its active samples (above 1% of the peak: pauses would flatter the ratio)."""
    active = audio[np.abs(audio) > 0.01 * np.abs(audio).max()]
    noise = lfilter([1.0], [1.0, -0.9], np.random.default_rng(seed).standard_normal(len(audio)))
    noise *= np.sqrt(np.mean(active ** 2) / np.mean(noise ** 2) / 10 ** (snr_db / 10))
    return audio + noise


def _room(path, speech_wav, reverberance, seed):
    """Reverberate speech_wav with sox, then add noise at ROOM_SNR_DB."""
    wet = path.with_name(path.name + ".wet.wav")
    subprocess.run(["sox", str(speech_wav), str(wet), "reverb", str(reverberance), "50", "80"],
                   check=True, capture_output=True)
    audio, rate = sf.read(wet, dtype="float64")
    wet.unlink()
    mixed = add_noise(audio if audio.ndim == 1 else audio.mean(axis=1), ROOM_SNR_DB, seed)
    sf.write(path, (mixed / max(1.0, np.abs(mixed).max() / 0.99)).astype("float32"), rate,
             subtype="PCM_16")


def _make(job):
    """Write one utterance's WAV (under a temporary name, then moved into place)."""
    kind, path, *rest = job
    tmp = path.with_name(path.name + ".tmp.wav")
    if kind == "espeak":
        _espeak(tmp, *rest)
    elif kind == "room":
        voice, speed, pitch, text, reverberance, seed = rest
        dry = path.with_name(path.name + ".dry.wav")
        _espeak(dry, voice, speed, pitch, text)
        _room(tmp, dry, reverberance, seed)
        dry.unlink()
    elif kind == "jtalk":
        voice_file, speed, half_tones, text = rest
        text_file = path.with_name(path.name + ".txt")
        text_file.write_text(text.replace(" ", "") + "\n", encoding="utf-8")
        subprocess.run(["open_jtalk", "-x", JTALK_DICT, "-m", str(voice_file), "-r", str(speed),
                        "-fm", str(half_tones), "-ow", str(tmp), str(text_file)],
                       check=True, capture_output=True)
        text_file.unlink()
    elif kind == "flite":
        voice, stretch, text = rest
        subprocess.run(["flite", "-voice", voice, "--setf", f"duration_stretch={stretch}", "-t",
                        text, "-o", str(tmp)], check=True, capture_output=True)
    tmp.replace(path)


def mei_voice() -> Path:
    return cache_dir() / "htsvoice" / "mei_normal.htsvoice"


def check_engines(langs, engine_per_lang):
    """The second engines that test_engine needs, or what to run to get them."""
    if engine_per_lang == 0:
        return
    fix = "run: bash tools/install.sh (or --engine_per_lang 0: no test_engine set)"
    if "ja" in langs:
        if not shutil.which("open_jtalk") or not Path(JTALK_DICT).is_dir():
            sys.exit(f"error: test_engine (Japanese) needs Open JTalk and its dictionary "
                     f"(Debian open-jtalk, open-jtalk-mecab-naist-jdic); {fix}")
        if not mei_voice().is_file():
            sys.exit(f"error: test_engine (Japanese) needs the Mei voice at {mei_voice()}; {fix}")
    if "en" in langs and not shutil.which("flite"):
        sys.exit(f"error: test_engine (English) needs flite (Debian flite); {fix}")


def extra_count(value, limit, option, what, test_per_lang):
    """An extra set's size: by default as large as test, at most DEFAULT_EXTRA; an explicit value
    must fit in what exists."""
    if value is None:
        return min(DEFAULT_EXTRA, limit, test_per_lang)
    if not 0 <= value <= limit:
        sys.exit(f"error: {option} {value}: must be 0..{limit} ({what})")
    return value


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("data"), help="where data/<set> go")
    parser.add_argument("--audio_dir", type=Path, default=Path("downloads/synth"))
    parser.add_argument("--langs", default="ja,ko,en,es")
    parser.add_argument("--train_per_lang", type=int, default=100)
    parser.add_argument("--dev_per_lang", type=int, default=10)
    parser.add_argument("--test_per_lang", type=int, default=20)
    parser.add_argument("--train_subset", type=int, default=None,
                        help="keep only the first N of the --train_per_lang training utterances "
                             "per language: a low-resource training set whose dev and test sets "
                             "are exactly those of the full one")
    parser.add_argument("--free_per_lang", type=int, default=None,
                        help="test_free utterances per language (default: as many as "
                             f"--test_per_lang, at most {DEFAULT_EXTRA}; 40 exist)")
    parser.add_argument("--room_per_lang", type=int, default=None,
                        help="test_room utterances per language: the first N test sentences "
                             f"(default {DEFAULT_EXTRA}, at most --test_per_lang)")
    parser.add_argument("--engine_per_lang", type=int, default=None,
                        help="test_engine utterances of Japanese and English: the first N test "
                             f"sentences (default {DEFAULT_EXTRA}, at most --test_per_lang)")
    parser.add_argument("--nj", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    for option in ("train_per_lang", "dev_per_lang", "test_per_lang"):
        if getattr(args, option) < 0:
            sys.exit(f"error: --{option} {getattr(args, option)}: must be 0 or more")
    if args.train_subset is not None and not 1 <= args.train_subset <= args.train_per_lang:
        sys.exit(f"error: --train_subset {args.train_subset}: must be 1..--train_per_lang "
                 f"({args.train_per_lang})")
    langs = args.langs.split(",")
    for lang in langs:
        if lang not in GRAMMARS:
            sys.exit(f"error: --langs: unknown language {lang!r}; choose from {sorted(GRAMMARS)}")
    free = extra_count(args.free_per_lang, min(len(FREE_SENTENCES[lang]) for lang in langs),
                       "--free_per_lang", "sentences written per language", args.test_per_lang)
    room = extra_count(args.room_per_lang, args.test_per_lang, "--room_per_lang",
                       "it re-reads the first test sentences: at most --test_per_lang",
                       args.test_per_lang)
    engine = extra_count(args.engine_per_lang, args.test_per_lang, "--engine_per_lang",
                         "it re-reads the first test sentences: at most --test_per_lang",
                         args.test_per_lang)
    check_engines(langs, engine)

    sets = {"train": {}, "dev": {}, "test": {}, "test_free": {}, "test_room": {},
            "test_engine": {}}
    jobs = []
    args.audio_dir.mkdir(parents=True, exist_ok=True)

    def add(set_name, spk, index, text, job):
        utt = f"{spk}-{set_name}{index:04d}"
        wav = (args.audio_dir / f"{utt}.wav").resolve()
        jobs.append((job[0], wav, *job[1:]))
        for name, value in (("wav.scp", str(wav)), ("text", text), ("utt2spk", spk),
                            ("utt2lang", spk.split("_")[0])):
            sets[set_name].setdefault(name, {})[utt] = value

    for lang in langs:
        voice = GRAMMARS[lang]["voice"]
        rng = random.Random(f"{args.seed}-{lang}-speakers")
        seen, novel = sentences(lang, args.seed)
        plan = [("train", args.train_per_lang, [1, 2, 3]), ("dev", args.dev_per_lang, [4]),
                ("test", args.test_per_lang, [4])]
        test_sentences = []
        for set_name, count, speakers in plan:
            for index in range(count):
                # Training: training words only; dev/test: every other sentence has a new word.
                pool = novel if set_name != "train" and index % 2 else seen
                written, spoken = next(pool)
                spk_num = speakers[index % len(speakers)]
                variant, speed, pitch = SPEAKERS[spk_num]
                job = ("espeak", f"{voice}+{variant}", speed + rng.randint(-10, 10),
                       pitch + rng.randint(-5, 5), spoken)
                if set_name == "train" and index >= (args.train_subset or count):
                    continue  # drawn all the same: the later sets do not depend on the subset
                add(set_name, f"{lang}_s{spk_num}", index, written, job)
                if set_name == "test":
                    test_sentences.append((written, spoken))
        # The extra sets draw from their own generators: the sets above stay as they were.
        extra = random.Random(f"{args.seed}-{lang}-extra")
        variant, speed, pitch = SPEAKERS[4]
        for index, (written, spoken) in enumerate(FREE_SENTENCES[lang][:free]):
            add("test_free", f"{lang}_s4", index, written,
                ("espeak", f"{voice}+{variant}", speed + extra.randint(-10, 10),
                 pitch + extra.randint(-5, 5), spoken))
        for index, (written, spoken) in enumerate(test_sentences[:room]):
            spk_num = 5 + index % 2
            variant, speed, pitch = ROOM_SPEAKERS[spk_num]
            add("test_room", f"{lang}_s{spk_num}", index, written,
                ("room", f"{voice}+{variant}", speed + extra.randint(-5, 5),
                 pitch + extra.randint(-5, 5), spoken, extra.randint(30, 70),
                 extra.randrange(2 ** 32)))
        for index, (written, spoken) in enumerate(test_sentences[:engine]):
            if lang == "ja":
                add("test_engine", f"ja_{ENGINE_VOICES['ja'][0]}", index, written,
                    ("jtalk", mei_voice(), round(extra.uniform(0.9, 1.15), 2),
                     round(extra.uniform(-2, 2), 1), spoken))
            elif lang == "en":
                name = ENGINE_VOICES["en"][index % len(ENGINE_VOICES["en"])]
                add("test_engine", f"en_{name}", index, written,
                    ("flite", name, round(extra.uniform(0.9, 1.1), 2), spoken))

    todo = [job for job in jobs if not job[1].is_file()]
    progress = Progress(len(todo), "speech synthesis")
    with Pool(max(1, args.nj)) as workers:
        for _ in workers.imap_unordered(_make, todo, chunksize=8):
            progress.update()
    for set_name, files in sets.items():
        if files:
            write_data_dir(args.out / set_name, files)
        elif (args.out / set_name).is_dir():  # asked for none: no stale set from an earlier run
            shutil.rmtree(args.out / set_name)
    print(f"synthesized {len(jobs)} utterances ({len(jobs) - len(todo)} already there): " +
          ", ".join(f"{s} {len(f.get('text', {}))}" for s, f in sets.items()), file=sys.stderr)


if __name__ == "__main__":
    main()
