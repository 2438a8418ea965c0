import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

# The longest files first (stable: a file's own order is kept, its tests may build on each other):
# `tools/test.sh` runs the files on two pytest-xdist workers, each file on one worker, in this
# order (--no-loadscope-reorder), and the suite ends soonest when the longest starts at once and
# the others fill the second worker. Measured per file (s, 2026-12-02, before the ESPnet beam
# reference was shortened by ~400 s): test_recipe 1201, test_decoding 874, test_corpora 379,
# test_lang_experts 101, the rest under 50 each.
LONG_FILES = ["test_recipe.py", "test_decoding.py", "test_recipe_sizes.py", "test_ddp.py",
              "test_corpora.py", "test_whisper_sizes.py", "test_lang_experts.py"]


def pytest_collection_modifyitems(items):
    def rank(item):
        name = item.path.name
        return LONG_FILES.index(name) if name in LONG_FILES else len(LONG_FILES)
    items.sort(key=rank)


# Short sentences written for these tests, read by espeak-ng: {id: (language, voice, text)}.
UTTERANCES = {
    "en1": ("en", "en", "The weather is mild and the river runs slowly today."),
    "en2": ("en", "en+f3", "Please put the green book back on the second shelf."),
    "ko1": ("ko", "ko", "오늘은 날씨가 맑고 바람이 조금 붑니다."),
    "ko2": ("ko", "ko", "도서관은 아침 아홉 시에 문을 엽니다."),
    "ja1": ("ja", "ja", "きょうは そらが あおくて とても きもちが いいです。"),
}


def synthesize(text: str, voice: str, path: Path, speed: int = 150) -> Path:
    """espeak-ng speech, converted by sox to 16 kHz mono 16-bit."""
    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(path)], check=True)
    raw.unlink()
    return path


@pytest.fixture(scope="session")
def speech(tmp_path_factory):
    """{id: (float32 16 kHz waveform, language)} for a few synthesized utterances."""
    root = tmp_path_factory.mktemp("speech")
    out = {}
    for utt, (lang, voice, text) in UTTERANCES.items():
        audio, rate = soundfile.read(synthesize(text, voice, root / f"{utt}.wav"), dtype="float32")
        assert rate == 16000
        out[utt] = (np.ascontiguousarray(audio), lang)
    return out


@pytest.fixture(scope="session")
def whisper_base():
    """openai-whisper base in float32, loaded by name: the plugin resolves the offline weights."""
    import whisper

    return whisper.load_model("base", device="cpu").float().eval()


@pytest.fixture(scope="session")
def token_list(tmp_path_factory):
    path = tmp_path_factory.mktemp("tokens") / "tokens.txt"
    subprocess.run([sys.executable, "-m", "espnet2.bin.whisper_export_vocabulary",
                    "--whisper_model", "whisper_multilingual", "--output", str(path)],
                   check=True, capture_output=True)
    return path


def build_espnet_model(config: Path, token_list: Path, *extra: str):
    """An ESPnet ASR model from a config (its base_config composed), as asr_train builds it
    (adapter included)."""
    import tempfile

    from espnet2.layers.create_adapter import create_adapter

    from espnet_lalora.config import load_config, write_config
    from espnet_lalora.espnet_plugin import ASRTask

    composed = Path(tempfile.mkdtemp()) / "config.yaml"
    write_config(load_config(config), composed)
    args = ASRTask.get_parser().parse_args([
        "--config", str(composed), "--token_list", str(token_list),
        "--token_type", "whisper_multilingual", "--bpemodel", "whisper_multilingual", *extra])
    model = ASRTask.build_model(args)
    if args.use_adapter:
        create_adapter(model, args.adapter, args.adapter_conf)
    return model


def recipe_copy(root: Path, recipe: str = "egs2/mini_multi/asr1") -> Path:
    """A copy of ``recipe`` under ``root``, laid out like the repository (local/ and conf/
    linked), without its data, dumps and experiments."""
    import shutil

    repo = Path(__file__).resolve().parents[1]
    for shared in ("local", "conf"):
        (root / shared).symlink_to(repo / shared)
    shutil.copytree(repo / recipe, root / recipe, symlinks=True,
                    ignore=shutil.ignore_patterns("data", "dump", "exp", "downloads"))
    return root / recipe


def assert_resumed(result, exp: Path):
    """A rerun of stage 8 that took up the killed run's checkpoint and trained epoch 2."""
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resuming the interrupted run (same inputs)" in result.stderr
    assert "The training was resumed using" in (exp / "train.log").read_text(errors="replace")
    assert (exp / "2epoch.pth").exists()


def config_copy(name: str, path: Path, old: str = "", new: str = "") -> Path:
    """``conf/<name>`` written to ``path`` with ``old`` replaced by ``new``; its base_config
    points back at conf/, so the copy composes like the original."""
    conf = Path(__file__).resolve().parents[1] / "conf"
    text = (conf / name).read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in conf/{name}"
    text = text.replace(old, new).replace("base_config: ", f"base_config: {conf}/")
    path.write_text(text, encoding="utf-8")
    return path
