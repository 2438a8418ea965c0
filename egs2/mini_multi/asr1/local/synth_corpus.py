#!/usr/bin/env python3
"""Synthesize the embedded multilingual corpus with espeak-ng: Japanese (kana), Korean, English,
Spanish.

Sentences come from small grammars written for this project (time + subject + place + action),
so thousands of distinct sentences exist; each is used once, so train, dev and test never share
a sentence. The last place and the last action of each language never occur in training: half of
the dev and test sentences contain one of them, so the test also measures words the fine-tuning
never saw. Each language has four synthetic speakers (voice variant, rate, pitch); speaker 4 is
held out for dev and test. Audio is espeak-ng's own 22.05 kHz WAV: stage 3 resamples it.
"""

import argparse
import itertools
import random
import subprocess
import sys
from multiprocessing import Pool
from pathlib import Path

from espnet_lalora.datadir import write_data_dir
from espnet_lalora.progress import Progress

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


def _speak(job):
    path, voice, speed, pitch, text = job
    tmp = path.with_name(path.name + ".tmp.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(tmp),
                    text], check=True, capture_output=True)
    tmp.replace(path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("data"), help="where data/<set> go")
    parser.add_argument("--audio_dir", type=Path, default=Path("downloads/espeak"))
    parser.add_argument("--langs", default="ja,ko,en,es")
    parser.add_argument("--train_per_lang", type=int, default=100)
    parser.add_argument("--dev_per_lang", type=int, default=10)
    parser.add_argument("--test_per_lang", type=int, default=20)
    parser.add_argument("--nj", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    sets = {"train": {}, "dev": {}, "test": {}}
    jobs = []
    args.audio_dir.mkdir(parents=True, exist_ok=True)
    for lang in args.langs.split(","):
        if lang not in GRAMMARS:
            sys.exit(f"error: --langs: unknown language {lang!r}; choose from {sorted(GRAMMARS)}")
        rng = random.Random(f"{args.seed}-{lang}-speakers")
        seen, novel = sentences(lang, args.seed)
        plan = [("train", args.train_per_lang, [1, 2, 3]), ("dev", args.dev_per_lang, [4]),
                ("test", args.test_per_lang, [4])]
        for set_name, count, speakers in plan:
            for index in range(count):
                # Training: training words only; dev/test: every other sentence has a new word.
                pool = novel if set_name != "train" and index % 2 else seen
                written, spoken = next(pool)
                spk_num = speakers[index % len(speakers)]
                variant, speed, pitch = SPEAKERS[spk_num]
                spk = f"{lang}_s{spk_num}"
                utt = f"{spk}-{set_name}{index:04d}"
                wav = (args.audio_dir / f"{utt}.wav").resolve()
                jobs.append((wav, f"{GRAMMARS[lang]['voice']}+{variant}",
                             speed + rng.randint(-10, 10), pitch + rng.randint(-5, 5), spoken))
                files = sets[set_name]
                for name, value in (("wav.scp", str(wav)), ("text", written),
                                    ("utt2spk", spk), ("utt2lang", lang)):
                    files.setdefault(name, {})[utt] = value

    todo = [job for job in jobs if not job[0].is_file()]
    progress = Progress(len(todo), "espeak-ng synthesis")
    with Pool(max(1, args.nj)) as workers:
        for _ in workers.imap_unordered(_speak, todo, chunksize=8):
            progress.update()
    for set_name, files in sets.items():
        write_data_dir(args.out / set_name, files)
    print(f"synthesized {len(jobs)} utterances ({len(jobs) - len(todo)} already there): " +
          ", ".join(f"{s} {len(f['text'])}" for s, f in sets.items()), file=sys.stderr)


if __name__ == "__main__":
    main()
