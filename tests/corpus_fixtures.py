"""Small copies of the real corpora's folder layouts, built from a few espeak-ng utterances:
Common Voice (48 kHz mp3 + TSVs), JSUT basic5000 (48 kHz WAV + transcript_utf8.txt),
Zeroth-Korean (16 kHz FLAC + per-folder trans.txt), and a user's own corpus (a TSV, a CSV and a
Kaldi dir). Only the layouts are real; the audio is synthetic."""

from pathlib import Path

import numpy as np
import soundfile
from scipy.signal import resample_poly

from conftest import synthesize

# Kana for the Japanese voice (it cannot read kanji); the transcripts may hold kanji.
SPEECH = {
    "ja": [("きょうは いい てんきです", "今日はいい天気です。"),
           ("みずを ください", "水をください。"),
           ("えきは どこですか", "駅はどこですか？"),
           ("ありがとう ございます", "ありがとうございます。")],
    "ko": [("오늘은 날씨가 좋습니다", "오늘은 날씨가 좋습니다."),
           ("물을 주세요", "물을 주세요."),
           ("역은 어디입니까", "역은 어디입니까?"),
           ("감사합니다", "감사합니다.")],
}


def voices(root: Path):
    """{lang: [(16 kHz float32 audio, transcript)]}: each sentence synthesized once."""
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for lang, items in SPEECH.items():
        out[lang] = []
        for i, (spoken, text) in enumerate(items):
            audio, rate = soundfile.read(synthesize(spoken, lang, root / f"{lang}{i}.wav", 190),
                                         dtype="float32")
            out[lang].append((audio, text))
    return out


def write_audio(path: Path, audio, rate: int, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    if rate != 16000:
        audio = resample_poly(audio, rate // 1000, 16).astype(np.float32)
    soundfile.write(path, audio, rate, **kw)


CV_HEADER = ["client_id", "path", "sentence", "up_votes", "down_votes", "age", "gender",
             "accents", "variant", "locale", "segment"]


def commonvoice(root: Path, speech) -> Path:
    """release/{ja,ko}/: clips/*.mp3 (48 kHz), train/dev/test.tsv; ko also clip_durations.tsv.
    Train: 4 clips of speakers a, b, c plus one of speaker t, who is also in test."""
    release = root / "cv-corpus-test"
    for lang, items in speech.items():
        folder = release / lang
        rows = {"train": [], "dev": [], "test": []}
        plan = [("train", "a", 0), ("train", "b", 1), ("train", "c", 2), ("train", "a", 3),
                ("train", "t", 1), ("dev", "d", 2), ("test", "t", 0), ("test", "e", 3)]
        durations = []
        for n, (split, spk, k) in enumerate(plan):
            clip = f"common_voice_{lang}_{1000 + n}.mp3"
            audio, text = items[k]
            write_audio(folder / "clips" / clip, audio, 48000, format="MP3")
            client = (spk * 64)[:64] + lang.encode().hex() * 32
            rows[split].append([client, clip, text, "2", "0", "", "", "", "", lang, ""])
            durations.append(f"{clip}\t{round(len(audio) / 16)}")
        for split, lines in rows.items():
            (folder / f"{split}.tsv").write_text(
                "\n".join("\t".join(r) for r in [CV_HEADER] + lines) + "\n", encoding="utf-8")
        if lang == "ko":
            (folder / "clip_durations.tsv").write_text(
                "clip\tduration[ms]\n" + "\n".join(durations) + "\n", encoding="utf-8")
    return release


def jsut(root: Path, speech) -> Path:
    """jsut_ver1.1/basic5000/wav/BASIC5000_000N.wav (48 kHz) + transcript_utf8.txt."""
    base = root / "jsut_ver1.1" / "basic5000"
    lines = []
    for n in range(1, 7):
        audio, text = speech["ja"][(n - 1) % 4]
        name = f"BASIC5000_{n:04d}"
        write_audio(base / "wav" / f"{name}.wav", audio, 48000)
        lines.append(f"{name}:{text}")
    (base / "transcript_utf8.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root / "jsut_ver1.1"


def zeroth(root: Path, speech) -> Path:
    """train_data_01/003/{101,102,103}/ and test_data_01/003/201/: FLAC + <spk>_003.trans.txt."""
    corpus = root / "zeroth_korean"
    for part, speakers in (("train_data_01", ["101", "102", "103"]), ("test_data_01", ["201"])):
        for s, spk in enumerate(speakers):
            folder = corpus / part / "003" / spk
            lines = []
            for n in range(2):
                audio, text = speech["ko"][(s + n) % 4]
                name = f"{spk}_003_{n:04d}"
                write_audio(folder / f"{name}.flac", audio, 16000)
                lines.append(f"{name} {text.rstrip('.?')}")
            (folder / f"{spk}_003.trans.txt").write_text("\n".join(lines) + "\n",
                                                         encoding="utf-8")
    return corpus


def custom(root: Path, speech) -> Path:
    """A user's corpus: train.tsv (header, 4 columns, mp3/flac/44.1 kHz stereo WAV), dev.csv
    (3 columns, quoted text; language from --data_lang ko), test/ as a Kaldi data dir."""
    corpus = root / "my_corpus"
    audio_dir = corpus / "audio"
    rows = ["path\ttranscript\tspeaker\tlang"]
    for i, (lang, fmt) in enumerate([("ja", "mp3"), ("ko", "flac"), ("ja", "wav"), ("ko", "wav")]):
        audio, text = speech[lang][i]
        path = audio_dir / f"train{i}.{fmt}"
        if fmt == "wav" and i == 2:
            write_audio(path, np.stack([audio, audio], axis=1), 44100)
        else:
            write_audio(path, audio, 16000 if fmt != "mp3" else 48000,
                        **({"format": "MP3"} if fmt == "mp3" else {}))
        rows.append(f"audio/train{i}.{fmt}\t{text}\tspk{i % 2}\t{lang}")
    (corpus / "train.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    write_audio(audio_dir / "dev0.wav", speech["ko"][1][0], 16000)
    (corpus / "dev.csv").write_text('audio/dev0.wav,"물을, 주세요.",spk9\n', encoding="utf-8")
    test = corpus / "test"
    test.mkdir()
    lines = {"wav.scp": [], "text": [], "utt2spk": [], "utt2lang": []}
    for i, lang in enumerate(["ja", "ko"]):
        audio, text = speech[lang][3 - i]
        write_audio(audio_dir / f"test{i}.wav", audio, 16000)
        utt = f"spk7-test{i}"
        lines["wav.scp"].append(f"{utt} {audio_dir / f'test{i}.wav'}")
        lines["text"].append(f"{utt} {text}")
        lines["utt2spk"].append(f"{utt} spk7")
        lines["utt2lang"].append(f"{utt} {lang}")
    for name, content in lines.items():
        (test / name).write_text("\n".join(content) + "\n", encoding="utf-8")
    return corpus
