"""The tiny recipe's stages 5-12 on random models with the layouts of large-v3 and large-v3-turbo
(width 64: tests/whisper_shapes.py), given to the real driver as ``--whisper_model <file>``: the
v3 token list, training LoRA on every block (turbo: 32 -> 6 encoder and 4 decoder blocks here),
the export in both formats, decoding of the fine-tuned and the zero-shot model, scoring, report."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import recipe_copy
from whisper_shapes import SHAPES, random_checkpoint

ROOT = Path(__file__).resolve().parents[1]
RECIPE = "egs2/mini_multi/asr1"
DATA = "--langs ja,ko --train_per_lang 4 --dev_per_lang 1 --test_per_lang 2 --real_per_lang 1 --engine_per_lang 0"
WIDTH, RANK = 64, 8


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    """A scratch copy of the recipe with its data made (stages 1-4) once, and its own cache."""
    root = tmp_path_factory.mktemp("sizes")
    env = dict(os.environ, ESPNET_LALORA_CACHE=str(root / "cache"), PYTHONPATH=str(ROOT))
    recipe = recipe_copy(root, RECIPE)
    made = run(recipe, env, "--stage", "1", "--stop_stage", "4", "--local_data_opts", DATA,
               "--test_sets", "test",
               "--nj", "1")
    assert made.returncode == 0, made.stderr[-3000:]
    return recipe, env


def run(recipe, env, *args):
    return subprocess.run(["./run.sh", "--python", sys.executable, *args], cwd=recipe, env=env,
                          capture_output=True, text=True, timeout=1200)


def lora_count(encoder_layers, decoder_layers, d=WIDTH, r=RANK):
    """conf/train_lora.yaml: rank r on every Linear of every block, r * (in + out) each."""
    attention, mlp = 4 * r * 2 * d, 2 * r * (d + 4 * d)
    return encoder_layers * (attention + mlp) + decoder_layers * (2 * attention + mlp)


@pytest.mark.parametrize("shape", ["large-v3", "large-v3-turbo"])
def test_stages_5_to_12_on_a_checkpoint_file(recipe, shape, tmp_path):
    recipe, env = recipe
    n_mels, n_vocab, encoder_layers, decoder_layers = SHAPES[shape]
    checkpoint = random_checkpoint(shape, tmp_path / f"{shape}.pt")
    result = run(recipe, env, "--stage", "5", "--stop_stage", "12", "--whisper_model",
                 str(checkpoint), "--test_sets", "test", "--asr_tag", shape, "--nj", "1",
                 "--train_args", "--max_epoch 1 --batch_size 4 --num_workers 0",
                 "--inference_args", "--maxlenratio 0.3 --beam_size 2",
                 "--zero_shot_inference_args", "--max_tokens 10")
    assert result.returncode == 0, result.stderr[-4000:]
    for stage in range(5, 13):
        assert f"Stage {stage}:" in result.stderr
    tokens = recipe / "data/token_list/whisper_multilingual_100/tokens.txt"
    assert len(tokens.read_text(encoding="utf-8").splitlines()) == n_vocab == 51866

    exp = recipe / "exp" / f"asr_{shape}"
    config = yaml.safe_load((exp / "config.yaml").read_text())
    name = config["encoder_conf"]["whisper_model"]
    assert name.startswith(f"{shape}-") and config["decoder_conf"]["whisper_model"] == name
    exported = torch.load(exp / "export/whisper/model.pt", weights_only=True)
    assert exported["dims"] == torch.load(checkpoint, weights_only=True)["dims"]
    assert (exported["dims"]["n_mels"], exported["dims"]["n_text_layer"]) == (n_mels,
                                                                              decoder_layers)
    # CTranslate2 4 saves the vocabulary as vocabulary.json (the installed base folder: .txt)
    vocabulary = json.loads((exp / "export/ct2/vocabulary.json").read_text(encoding="utf-8"))
    assert len(vocabulary) == n_vocab and vocabulary[50358] == "<|yue|>"
    assert str(n_mels) in (exp / "export/ct2/preprocessor_config.json").read_text()

    results = (exp / "RESULTS.md").read_text(encoding="utf-8")
    assert f"trainable parameters: {lora_count(encoder_layers, decoder_layers):,}" in results
    utts = (recipe / "dump/raw/test/text").read_text(encoding="utf-8").splitlines()
    for model in (exp, recipe / "exp" / f"asr_zero_shot_whisper_{name}"):
        decoded = model / "decode_decode" / "test"
        assert len((decoded / "text").read_text(encoding="utf-8").splitlines()) == len(utts)
        assert (decoded / "score_cer" / "result.txt").is_file()
    assert name in (recipe / "exp/RESULTS.md").read_text(encoding="utf-8")
