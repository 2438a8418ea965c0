"""Raw LoRA in ESPnet's Whisper: the layer, the placement, freezing, merging, the language prompt,
and config checks."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import build_espnet_model

from espnet_lalora.methods import AdapterConfigError, get_method
from espnet_lalora.methods.lora_layer import LoRALinear, merge_lora

ROOT = Path(__file__).resolve().parents[1]


def test_lora_linear_is_base_plus_scaled_low_rank_update():
    torch.manual_seed(0)
    base = torch.nn.Linear(16, 12)
    layer = LoRALinear(base, rank=4, alpha=8)
    torch.nn.init.normal_(layer.lora_B)
    x = torch.randn(3, 16)
    expected = base(x) + (x @ layer.lora_A.T @ layer.lora_B.T) * 2.0
    assert torch.allclose(layer(x), expected, atol=1e-6)
    plain = layer.to_plain_linear()
    assert type(plain) is torch.nn.Linear
    assert torch.allclose(plain(x), expected, atol=1e-5)
    with pytest.raises(ValueError, match="rank must be >= 1"):
        LoRALinear(torch.nn.Linear(4, 4), rank=0, alpha=1)


@pytest.fixture(scope="module")
def lora_model(token_list):
    return build_espnet_model(ROOT / "conf" / "train_lora.yaml", token_list)


def test_raw_lora_adapts_all_96_linears_and_freezes_the_rest(lora_model):
    lora = {n: m for n, m in lora_model.named_modules() if isinstance(m, LoRALinear)}
    assert len(lora) == 96  # 6 encoder blocks x 6 + 6 decoder blocks x 10 on base
    assert "decoder.decoders.blocks.5.cross_attn.key" in lora
    trainable = {n for n, p in lora_model.named_parameters() if p.requires_grad}
    assert trainable and all(n.endswith((".lora_A", ".lora_B")) for n in trainable)
    # 44 d r per encoder+decoder block pair: 44 * 512 * 8 * 6
    assert sum(p.numel() for p in lora_model.parameters() if p.requires_grad) == 1_081_344


def test_merged_model_gives_the_same_outputs(lora_model):
    import copy

    model = copy.deepcopy(lora_model).eval()
    for module in model.modules():
        if isinstance(module, LoRALinear):
            torch.nn.init.normal_(module.lora_B, std=0.02)
    speech = torch.randn(1, 16000) * 0.1
    tokens = torch.tensor([[50258, 50264, 50359, 50363, 440, 1002, 307]])
    with torch.no_grad():
        def logits(m):
            enc, lens = m.encode(speech, torch.tensor([16000]))
            return m.decoder(enc, lens, tokens, torch.tensor([tokens.shape[1]]))[0]
        before = logits(model)
        assert merge_lora(model) == 96
        after = logits(model)
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    assert (before - after).abs().max().item() < 1e-3
    assert (before - logits(lora_model.eval())).abs().max().item() > 1e-3  # the update mattered


@pytest.mark.parametrize("strategy", ["all", "adapter_only", "required_grad_only"])
def test_a_merged_model_checkpoint_loads_as_espnet_loads_it(lora_model, strategy):
    """Layers merged in place (``LoRALinear.merge``), saved as ESPnet's trainer saves with each
    save strategy, loaded non-strictly as ``build_model_from_file`` does into a fresh adapter
    model, merged or not: the same outputs, the update applied once."""
    import copy

    import loralib

    torch.manual_seed(0)
    trained = copy.deepcopy(lora_model).eval()
    layers = [m for m in trained.modules() if isinstance(m, LoRALinear)]
    for module in layers:
        torch.nn.init.normal_(module.lora_B, std=0.02)
    speech = torch.randn(1, 8000) * 0.1
    tokens = torch.tensor([[50258, 50264, 50359, 50363, 440, 1002, 307]])

    def logits(m):
        with torch.no_grad():
            enc, lens = m.encode(speech, torch.tensor([speech.shape[1]]))
            return m.decoder(enc, lens, tokens, torch.tensor([tokens.shape[1]]))[0]

    before = logits(trained)
    for module in layers:
        module.merge()
    state = trained.state_dict()  # the trainer's model.state_dict(), then its strategy
    if strategy == "adapter_only":
        state = loralib.lora_state_dict(trained)
    elif strategy == "required_grad_only":
        for n, p in trained.named_parameters():
            if not p.requires_grad:
                state.pop(n)
    for merge_first in (False, True):
        fresh = copy.deepcopy(lora_model).eval()  # B = 0, the base weights
        if merge_first:
            for module in fresh.modules():
                if isinstance(module, LoRALinear):
                    module.merge()
        fresh.load_state_dict(state, strict=False)
        diff = (logits(fresh) - before).abs().max().item()
        assert diff < 1e-3, (strategy, merge_first, diff)  # as the merge test; twice: > 3
    assert (before - logits(lora_model.eval())).abs().max().item() > 1e-2  # the update mattered


def test_rank_zero_and_unknown_keys_are_refused():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4))
    with pytest.raises(AdapterConfigError, match="adapter_conf.rank = 0"):
        get_method("lora").create_adapter(model, rank=0)
    with pytest.raises(AdapterConfigError, match=r"unknown key\(s\) \['ranks'\] for 'lora'"):
        get_method("lora").create_adapter(model, ranks=4)
    with pytest.raises(AdapterConfigError, match="adapter_conf.alpha = 'big' .* expected"):
        get_method("lora").create_adapter(model, alpha="big")
    assert type(model[0]) is torch.nn.Linear  # refused before anything was changed


def test_per_utterance_language_prompt(token_list):
    import espnet_lalora.espnet_plugin  # noqa: F401
    from espnet2.text.build_tokenizer import build_tokenizer
    from espnet2.text.whisper_token_id_converter import OpenAIWhisperTokenIDConverter

    tokenizer = build_tokenizer(token_type="whisper_multilingual", bpemodel="whisper_multilingual")
    converter = OpenAIWhisperTokenIDConverter(model_type="whisper_multilingual")
    ko = converter.tokens2ids(tokenizer.text2tokens("<|ko|>오늘은 맑음"))
    ja = converter.tokens2ids(tokenizer.text2tokens("<|ja|>はれ"))
    plain = converter.tokens2ids(tokenizer.text2tokens("hello"))
    assert ko[:3] == [50264, 50359, 50363] and ja[:3] == [50266, 50359, 50363]
    assert plain[:3] == [50259, 50359, 50363]  # ESPnet's default (whisper_language: en) kept
    assert ko[3:] == converter.tokens2ids(tokenizer.text2tokens("오늘은 맑음"))[3:]


@pytest.mark.parametrize("conf,message", [
    ("rank: 0", "adapter_conf.rank = 0"),
    ("rank: 8\n    ranks: 3", "unknown key(s) ['ranks']"),
])
def test_check_config_names_the_bad_option(tmp_path, conf, message):
    config = tmp_path / "bad.yaml"
    config.write_text(f"use_adapter: true\nadapter: lora\nadapter_conf:\n    {conf}\n")
    result = subprocess.run([sys.executable, "-m", "espnet_lalora.bin.check_config",
                             "--asr_config", str(config)], capture_output=True, text=True)
    assert result.returncode != 0
    assert message in result.stderr and str(config) in result.stderr


def test_check_config_rejects_an_unknown_method(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("use_adapter: true\nadapter: super_lora\n")
    result = subprocess.run([sys.executable, "-m", "espnet_lalora.bin.check_config",
                             "--asr_config", str(config)], capture_output=True, text=True)
    assert result.returncode != 0 and "unknown adapter 'super_lora'" in result.stderr
