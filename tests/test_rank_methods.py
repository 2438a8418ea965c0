"""S2-LoRA and AdaLoRA, the methods with learned ranks, on ESPnet's Whisper base: exact trainable
counts for each sharing mode, delta W = 0 at the start, exact merges into plain weights, the fused
S2-LoRA layer against autograd, the proximal L1 step, PEFT's AdaLoRA regularizer as the
numerical reference of ours, and the configuration errors. Training runs are in test_recipe.py."""

import copy
import types
from pathlib import Path

import pytest
import torch
from conftest import build_espnet_model

from espnet_lalora.export import merge_check
from espnet_lalora.methods import AdapterConfigError, get_method
from espnet_lalora.methods.s2_lora import S2LoRALinear, s2_modules, soft_threshold_
from espnet_lalora.params import parameter_report, whisper_skeleton

ROOT = Path(__file__).resolve().parents[1]
D = 512  # Whisper base width; block Linears are D x D (attention), D -> 4D, 4D -> D (MLP)
MODULES = 96  # 36 encoder + 60 decoder block Linears


@pytest.fixture(scope="module")
def s2_model(token_list):
    return build_espnet_model(ROOT / "conf" / "train_s2_lora.yaml", token_list)


@pytest.fixture(scope="module")
def adalora_model(token_list):
    return build_espnet_model(ROOT / "conf" / "train_adalora.yaml", token_list)


def trainable(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("sharing,expected", [
    # one pair per shape: r (D + D) + r (D + 4D) twice, plus r coefficients per weight
    ("shape", 16 * (2 * D) + 2 * 16 * (5 * D) + MODULES * 16),
    # one pair sliced: A r x 4D, B 4D x r
    ("sliced", 16 * (8 * D) + MODULES * 16),
    # no sharing: a pair per weight, twice raw LoRA's rank-8 count at rank 16
    ("none", 2 * 44 * D * 8 * 6 + MODULES * 16),
])
def test_s2_trainable_count_is_exact(sharing, expected):
    model = whisper_skeleton("base")
    get_method("s2_lora").create_adapter(model, rank=16, sharing=sharing)
    report = parameter_report(model, get_method("s2_lora"))
    assert report["trainable"] == trainable(model) == expected
    assert report["adapted_modules"] == MODULES and report["ranks"] == [16]
    assert len(set(id(m._shared[0]) for m in s2_modules(model).values())) == 1


def test_s2_default_scaling_is_the_documented_one():
    """Without ``alpha`` the scaling is conf/train_s2_lora.yaml's (384 / 16 = 24), not 1."""
    for conf, scaling in (({}, 24.0), ({"rank": 8}, 24.0), ({"alpha": 16.0}, 1.0)):
        model = whisper_skeleton("base")
        get_method("s2_lora").create_adapter(model, **conf)
        assert {m.scaling for m in s2_modules(model).values()} == {scaling}, conf


def test_s2_starts_at_the_base_model_and_merges_exactly(s2_model, token_list):
    base = build_espnet_model(ROOT / "conf" / "whisper_base.yaml", token_list)
    assert merge_check(base.eval(), s2_model.eval()) == 0.0  # lambda = 0: delta W = 0
    names = [n for n, p in s2_model.named_parameters() if p.requires_grad]
    assert all(n.startswith("s2_lora.") or n.endswith(".lora_coeff") for n in names)
    trained = copy.deepcopy(s2_model)
    torch.manual_seed(0)
    for m in s2_modules(trained).values():
        torch.nn.init.normal_(m.lora_coeff, std=0.02)
    merged = copy.deepcopy(trained)
    assert get_method("s2_lora").merge(merged) == MODULES
    assert merge_check(trained, merged) < 1e-3
    assert merge_check(base, merged) > 1e-2  # the update is really in the weights
    assert sorted(merged.state_dict()) == sorted(base.state_dict())  # a plain model again


def test_s2_layer_matches_its_formula_forward_and_backward():
    torch.manual_seed(0)
    model = torch.nn.Module()
    model.encoder = torch.nn.Module()
    model.encoder.blocks = torch.nn.ModuleList([torch.nn.Module()])
    model.encoder.blocks[0].mlp = torch.nn.Sequential(torch.nn.Linear(6, 12), torch.nn.GELU(),
                                                      torch.nn.Linear(12, 6))
    get_method("s2_lora").create_adapter(model, rank=3, alpha=6.0, sharing="sliced",
                                         target_modules=["mlp.0", "mlp.2"])
    layer = model.encoder.blocks[0].mlp[2]
    assert isinstance(layer, S2LoRALinear)
    with torch.no_grad():
        layer.lora_coeff.copy_(torch.tensor([0.5, 0.0, -2.0]))
    x = torch.randn(2, 5, 12, requires_grad=True)
    y = layer(x)
    A, B = model.s2_lora.A["all"], model.s2_lora.B["all"]
    coeff = layer.lora_coeff
    reference = (x @ layer.weight.T + layer.bias
                 + 2.0 * x @ (coeff[:, None] * A[:, :12]).T @ B[:6].T)
    torch.testing.assert_close(y, reference)
    g = torch.randn_like(y)
    grads = torch.autograd.grad(y, (x, coeff, A, B), g)
    expected = torch.autograd.grad(reference, (x, coeff, A, B), g)
    for ours, theirs in zip(grads, expected):
        torch.testing.assert_close(ours, theirs)


def test_s2_proximal_step_zeroes_small_coefficients(s2_model):
    model = copy.deepcopy(s2_model)
    layers = list(s2_modules(model).values())
    with torch.no_grad():
        layers[0].lora_coeff.copy_(torch.linspace(-0.02, 0.02, 16))
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05)
    args = types.SimpleNamespace(adapter_conf={"sparsity_weight": 0.2})
    hook = get_method("s2_lora").optimizer_step_hook(model, args)
    before = layers[0].lora_coeff.detach().clone()
    hook(optimizer)  # no gradient step: the proximal step alone, threshold 0.05 * 0.2 = 0.01
    after = layers[0].lora_coeff.detach()
    expected = before.sign() * (before.abs() - 0.01).clamp_min(0)
    torch.testing.assert_close(after, expected)
    assert int((after == 0).sum()) == int((before.abs() <= 0.01).sum()) > 0
    pattern = get_method("s2_lora").rank_pattern(model)
    first = next(iter(pattern))
    assert pattern[first]["rank"] == int((after != 0).sum()) and pattern[first]["of"] == 16
    c = torch.tensor([0.3, -0.3, 0.05])
    soft_threshold_([c], 0.1)
    torch.testing.assert_close(c, torch.tensor([0.2, -0.2, 0.0]))


def test_adalora_counts_merge_and_rank_pattern(adalora_model, token_list):
    method = get_method("adalora")
    report = parameter_report(adalora_model, method)
    # init_r 12 on every block Linear: 1.5 x raw LoRA at rank 8, plus 12 singular values each
    assert report["trainable"] == 44 * D * 8 * 6 * 3 // 2 + MODULES * 12 == 1_623_168
    assert report["base_parameters"] == parameter_report(
        build_espnet_model(ROOT / "conf" / "whisper_base.yaml", token_list), None)["trainable"]
    skeleton = whisper_skeleton("base")
    method.create_adapter(skeleton, init_r=12)
    assert parameter_report(skeleton, method) == report
    trained = copy.deepcopy(adalora_model)
    torch.manual_seed(0)
    for n, p in trained.named_parameters():
        if n.endswith("lora_E.default"):
            with torch.no_grad():
                p.normal_(std=0.5)[:5] = 0  # five singular values pruned in every module
    pattern = method.rank_pattern(trained)
    assert len(pattern) == MODULES and {e["rank"] for e in pattern.values()} == {7}
    merged = copy.deepcopy(trained)
    assert method.merge(merged) == MODULES
    assert merge_check(trained.eval(), merged.eval()) < 1e-3
    assert merge_check(adalora_model.eval(), merged) > 1e-2
    assert not any("lora" in k or "adalora" in k or "base_layer" in k for k in merged.state_dict())


def test_adalora_regularizer_equals_peft():
    """PEFT adds the orthogonality term in AdaLoraModel.forward to a Hugging Face output's
    loss; ours adds it to ESPnet's loss: same number on the same parameters."""
    from peft import AdaLoraConfig
    from peft.tuners.adalora import AdaLoraModel

    class Toy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.q, self.v = torch.nn.Linear(8, 8), torch.nn.Linear(8, 16)

        def forward(self, x):
            return types.SimpleNamespace(loss=(self.q(x).sum() + self.v(x).sum()) * 0)

    toy = Toy()
    tuner = AdaLoraModel(toy, AdaLoraConfig(target_modules=["q", "v"], init_r=4, target_r=2,
                                            total_step=100, orth_reg_weight=0.3), "default")
    torch.manual_seed(1)
    for n, p in toy.named_parameters():
        if "lora_" in n:
            with torch.no_grad():
                p.normal_()
    peft_value = tuner(torch.zeros(1, 8)).loss
    object.__setattr__(toy, "_adalora_tuner", tuner)
    ours = get_method("adalora").loss_term(toy)()
    torch.testing.assert_close(ours, peft_value)
    assert ours > 0


@pytest.mark.parametrize("method,conf,message", [
    ("s2_lora", {"rank": 0}, "adapter_conf.rank = 0 for adapter 's2_lora'"),
    ("s2_lora", {"sparsity_weight": -0.1}, "adapter_conf.sparsity_weight = -0.1"),
    ("s2_lora", {"sharing": "global"}, "adapter_conf.sharing = 'global'"),
    ("adalora", {"init_r": 0}, "adapter_conf.init_r = 0 for adapter 'adalora'"),
    ("adalora", {"init_r": 8, "target_r": 12}, "target_r = 12 is above init_r = 8"),
    ("adalora", {"tinit_share": 0.5, "tfinal_share": 0.5}, "leaves no steps to reallocate"),
    ("adalora", {"tfinal_share": 1.2}, "adapter_conf.tfinal_share = 1.2"),
    ("adalora", {"total_step": 0}, "adapter_conf.total_step = 0"),
])
def test_bad_configs_are_refused(method, conf, message):
    with pytest.raises(AdapterConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        get_method(method).parse_config(conf)


def test_adalora_refuses_a_run_too_short_to_reallocate():
    from espnet_lalora.methods.adalora import schedule

    config = get_method("adalora").parse_config({})
    assert schedule(config, 100) == (10, 30)
    assert schedule(config, 2) == (0, 1)  # the second step forces the final budget
    with pytest.raises(AdapterConfigError, match="the run has 1 optimizer steps"):
        schedule(config, 1)


class ToyModel(torch.nn.Module):
    """The least an ESPnet trainer trains: (loss, stats, weight) from a batch's ``x``."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(2))

    def forward(self, x, **kwargs):
        loss = (self.w * x).sum()
        return loss[None], {"loss": loss.detach()[None]}, torch.tensor([1])


def espnet_epoch(batches, hook, *options):
    """ESPnet's own ``Trainer.train_one_epoch`` over ``batches`` of ``x`` tensors (asr_train
    ``options``), ``hook(model)`` registered as the plugin's optimizer-step hook."""
    from espnet2.train.distributed_utils import DistributedOption
    from espnet2.train.reporter import Reporter
    from espnet2.train.trainer import Trainer

    from espnet_lalora.espnet_plugin import ASRTask, add_step_hook

    args = ASRTask.get_parser().parse_args(["--output_dir", "unused", *options])
    model = ToyModel()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    add_step_hook(optimizer, lambda opt: hook(model))
    reporter = Reporter()
    reporter.set_epoch(1)
    with reporter.observe("train") as sub:
        Trainer.train_one_epoch(
            model=model, iterator=[([f"u{i}"], {"x": x}) for i, x in enumerate(batches)],
            optimizers=[optimizer], schedulers=[None], scaler=None, reporter=sub,
            summary_writer=None, options=Trainer.build_options(args),
            distributed_option=DistributedOption(distributed=False))


def test_step_hook_follows_espnets_real_optimizer_steps_only():
    """ESPnet's own ``Trainer.train_one_epoch`` on three batches, the second with a non-finite
    loss: the plugin's step hook (AdaLoRA's allocation, S2-LoRA's proximal step) runs after the
    two real steps, with their gradients still present, and not after the skipped one."""
    grads = []
    espnet_epoch([torch.tensor([1.0, 2.0]), torch.tensor([float("nan"), 1.0]),
                  torch.tensor([3.0, 1.0])], lambda model: grads.append(model.w.grad.tolist()),
                 "--grad_clip", "100")
    assert grads == [[1.0, 2.0], [3.0, 1.0]]


def test_optimizer_steps_with_accum_grad_are_espnets():
    """AdaLoRA's budget schedule runs over ``total_step`` optimizer steps: with accum_grad 2 and
    five batches an epoch ESPnet's own trainer steps twice (the fifth batch never steps), so the
    count must be floor(5 / 2), not ceil (which drifted by one step per epoch)."""
    from espnet_lalora.methods.stage8 import steps_in_epoch

    for batches, accum in ((5, 2), (6, 3), (7, 3), (4, 1)):
        steps = []
        espnet_epoch([torch.tensor([1.0, 2.0])] * batches, lambda model: steps.append(1),
                     "--accum_grad", str(accum))
        assert len(steps) == steps_in_epoch(batches, accum), (batches, accum)
