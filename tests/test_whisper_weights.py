"""Where weights come from: priorities, the stock-ESPnet hook, the converter CLI, clear errors."""

import os
import subprocess
import sys

import pytest
import torch

from espnet_lalora.whisper_weights import converted_checkpoint, prepare_ct2_model


def run_python(code, env_extra, cwd):
    env = {**os.environ, **env_extra}
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd,
                          capture_output=True, text=True)


def test_converter_cli_reproduces_the_installed_checkpoint(tmp_path):
    out = tmp_path / "base.pt"
    subprocess.run([sys.executable, "-m", "espnet_lalora.bin.ct2_to_whisper",
                    "--ct2_model", str(prepare_ct2_model("base")), "--output", str(out)],
                   check=True, capture_output=True)
    ours, installed = torch.load(out), torch.load(converted_checkpoint("base"))
    assert ours["dims"] == installed["dims"]
    assert ours["dims"]["n_audio_layer"] == 6 and ours["dims"]["n_vocab"] == 51865
    assert ours["model_state_dict"].keys() == installed["model_state_dict"].keys()
    for name, tensor in ours["model_state_dict"].items():
        assert torch.equal(tensor, installed["model_state_dict"][name]), name


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
    # ESPnet's own encoder asking for a model that is nowhere on disk (and, here, no network).
    code = ("from espnet2.asr.encoder.whisper_encoder import OpenAIWhisperEncoder;"
            "OpenAIWhisperEncoder(whisper_model='tiny', download_dir=%r)" % str(tmp_path / "dl"))
    result = run_python(code, {"ESPNET_LALORA_OFFLINE": offline,
                               "ESPNET_LALORA_CACHE": str(tmp_path / "cache")}, tmp_path)
    assert result.returncode != 0
    message = result.stderr
    assert "WhisperWeightsNotFound" in message and "'tiny'" in message
    assert str(tmp_path / "dl" / "tiny.pt") in message
    assert str(tmp_path / "cache" / "whisper" / "tiny.pt") in message
    assert "ESPNET_LALORA_WHISPER_DIR" in message


def test_prepare_whisper_weights_refuses_a_model_no_package_ships():
    result = subprocess.run([sys.executable, "-m", "espnet_lalora.bin.prepare_whisper_weights",
                             "--model", "large-v2"], capture_output=True, text=True)
    assert result.returncode != 0
    assert "--model large-v2" in result.stderr and "base" in result.stderr
