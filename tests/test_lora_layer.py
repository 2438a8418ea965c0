"""``LoRALinear`` alone: checkpoints of a merged layer, which path (fused or composed) runs, and
autocast detection on an old torch. Small random layers; no ESPnet model."""

import io

import pytest
import torch

from espnet_lalora.methods import lora_layer
from espnet_lalora.methods.lora_layer import LoRALinear, _LoRALinearFunction


def make_layer(seed: int, bias: bool = True, dropout: float = 0.0) -> LoRALinear:
    torch.manual_seed(seed)
    layer = LoRALinear(torch.nn.Linear(16, 12, bias=bias), rank=4, alpha=8, dropout=dropout)
    torch.nn.init.normal_(layer.lora_B)  # B = 0 would hide an update applied twice
    return layer


def composed(layer: LoRALinear, x: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """The formula, written out: x W^T + b + s (x A^T) B^T, with the given unmerged W."""
    y = x @ W.T + (x @ layer.lora_A.T @ layer.lora_B.T) * layer.scaling
    return y if layer.bias is None else y + layer.bias


def through_file(state: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer)


@pytest.mark.parametrize("bias", [True, False])
def test_a_merged_layer_saves_and_loads_without_applying_the_update_twice(bias):
    layer = make_layer(0, bias)
    W = layer.weight.detach().clone()
    x = torch.randn(5, 16)
    with torch.no_grad():
        expected = composed(layer, x, W)
        update = (x @ layer.lora_A.T @ layer.lora_B.T) * layer.scaling
        assert update.abs().max() > 0.5  # applying it twice would show
        layer.merge()
        state = through_file(layer.state_dict())
        assert layer.merged and torch.allclose(layer(x), expected, atol=1e-5)  # saving kept it
        torch.testing.assert_close(state["weight"], W, rtol=0, atol=1e-6)  # the unmerged W
        for fresh_merged in (False, True):
            fresh = make_layer(1, bias)  # other weights, other A and B
            if fresh_merged:
                fresh.merge()
            assert not fresh.load_state_dict(state).missing_keys  # the same keys as ever
            assert fresh.merged == fresh_merged
            diff = (fresh(x) - expected).abs().max().item()
            assert diff < 1e-5, (fresh_merged, diff)
            fresh.unmerge()
            torch.testing.assert_close(fresh.weight, W, rtol=0, atol=1e-5)


@pytest.mark.parametrize("strategy", ["adapter_only", "required_grad_only"])
def test_a_partial_checkpoint_loads_into_a_merged_layer(strategy):
    """ESPnet's adapter saves hold A and B only (W stays the base model's); loaded non-strictly
    into a merged layer, the layer merges the loaded A and B, not the ones it had."""
    trained = make_layer(0)
    for p in (trained.weight, trained.bias):
        p.requires_grad = False
    W = trained.weight.detach().clone()
    state = trained.state_dict()
    if strategy == "adapter_only":  # loralib.lora_state_dict
        state = {k: v for k, v in state.items() if "lora_" in k}
    else:  # ESPnet's trainer drops the frozen parameters
        state = {k: v for k, v in state.items()
                 if dict(trained.named_parameters())[k].requires_grad}
    assert set(state) == {"lora_A", "lora_B"}
    x = torch.randn(5, 16)
    with torch.no_grad():
        expected = composed(trained, x, W)
        target = make_layer(0)  # the same base model, other A and B: merged with those
        torch.nn.init.normal_(target.lora_A)
        torch.nn.init.normal_(target.lora_B)
        target.merge()
        target.load_state_dict(state, strict=False)
        assert target.merged
        diff = (target(x) - expected).abs().max().item()
        assert diff < 1e-5, diff


def test_an_old_checkpoint_loads_strictly():
    """A state written before this change (an unmerged layer: weight, bias, lora_A, lora_B) has
    every key the layer asks for, and no other."""
    old = {k: v.clone() for k, v in make_layer(0).state_dict().items()}
    assert set(old) == {"weight", "bias", "lora_A", "lora_B"}
    fresh = make_layer(1)
    fresh.merge()
    fresh.load_state_dict(old)  # strict
    x = torch.randn(3, 16)
    reference = make_layer(0)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), reference(x), rtol=0, atol=1e-5)


class Spy:
    """Counts calls of ``_LoRALinearFunction.apply``, the fused path."""

    def __init__(self, monkeypatch):
        self.calls = 0
        apply = _LoRALinearFunction.apply

        def counting(*args):
            self.calls += 1
            return apply(*args)

        monkeypatch.setattr(_LoRALinearFunction, "apply", counting)


def test_eval_mode_with_dropout_uses_the_fused_function(monkeypatch):
    spy = Spy(monkeypatch)
    layer = make_layer(0, dropout=0.3)
    x = torch.randn(2, 5, 16, requires_grad=True)
    layer.eval()
    y = layer(x)
    assert spy.calls == 1
    torch.testing.assert_close(y, composed(layer, x, layer.weight), rtol=0, atol=1e-5)
    y.sum().backward()  # and gradients flow through it (e.g. an eval-mode loss)
    assert x.grad is not None and layer.lora_B.grad is not None
    layer.train()  # dropout active: the composed path, with a random mask
    torch.manual_seed(0)
    y_train = layer(x)
    assert spy.calls == 1
    assert (y_train - y).abs().max() > 1e-3  # dropout did act


def test_autocast_detection_on_a_torch_without_the_device_argument(monkeypatch):
    """Before torch 2.4, ``torch.is_autocast_enabled()`` took no argument (CUDA's state) and
    ``torch.is_autocast_cpu_enabled()`` gave CPU's. Fake that API over the real state, only
    around the layer's call (``torch.autocast`` itself uses the real one)."""
    real = torch.is_autocast_enabled

    def old_is_autocast_enabled():  # a device argument raises TypeError, as on torch < 2.4
        return real("cuda")

    def call_on_old_torch(layer, x):
        with monkeypatch.context() as old:
            old.setattr(torch, "is_autocast_enabled", old_is_autocast_enabled)
            old.setattr(torch, "is_autocast_cpu_enabled", lambda: real("cpu"))
            old.setattr(lora_layer, "_autocast_takes_device", None, raising=False)  # re-test
            return layer(x)

    spy = Spy(monkeypatch)
    layer = make_layer(0)
    x = torch.randn(3, 16)
    with torch.no_grad():
        y = call_on_old_torch(layer, x)
        assert spy.calls == 1  # no autocast: fused
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y_autocast = call_on_old_torch(layer, x)
        assert spy.calls == 1  # CPU autocast seen: the composed path, which autocast casts
    assert y_autocast.dtype == torch.bfloat16
    torch.testing.assert_close(y_autocast.float(), y, rtol=0.05, atol=0.05)
