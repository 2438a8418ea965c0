"""LA-LoRA without ESPnet: budgets, the scoring rule, the selection, selection files, the adapter.
(The pass on real data, under torch.distributed too, runs in tests/test_recipe.py.)"""

import json

import pytest
import torch
from torch import nn

from espnet_lalora.methods import get_method
from espnet_lalora.methods.base import count_parameters
from espnet_lalora.methods.la_lora import (GradStats, SelectionError, budget_parameters,
                                           check_budget, load_selection, make_selection,
                                           plot_selection, select, write_json)
from espnet_lalora.methods.lora_layer import inject_lora, lora_modules


def create_la_lora_adapter(model, **conf):
    return get_method("la_lora").create_adapter(model, **conf)


class Block(nn.Module):
    def __init__(self, d=16, cross=False):
        super().__init__()
        self.attn = nn.ModuleDict({k: nn.Linear(d, d) for k in ("query", "key", "value", "out")})
        if cross:
            self.cross_attn = nn.ModuleDict({k: nn.Linear(d, d) for k in ("query", "key", "value", "out")})
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))


class Toy(nn.Module):
    """Whisper's module names, two blocks each side."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Module()
        self.encoder.encoders = nn.Module()
        self.encoder.encoders.blocks = nn.ModuleList([Block(), Block()])
        self.decoder = nn.Module()
        self.decoder.decoders = nn.Module()
        self.decoder.decoders.blocks = nn.ModuleList([Block(cross=True), Block(cross=True)])

    def forward(self, x):
        for b in list(self.encoder.encoders.blocks) + list(self.decoder.decoders.blocks):
            h = sum(b.attn[k](x) for k in b.attn)
            if hasattr(b, "cross_attn"):
                h = h + sum(b.cross_attn[k](x) for k in b.cross_attn)
            x = x + h + b.mlp(x)
        return x


def candidates(model):
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]


@pytest.mark.parametrize("budget,message", [
    (0, "must be above 0"), (-0.1, "must be above 0"), (1.5, "above 100%"),
    ("10%", "give a share"), (True, "give a share"),
])
def test_bad_budgets_are_refused(budget, message):
    with pytest.raises(SelectionError, match=message):
        check_budget(budget)


def test_budget_as_share_or_count():
    assert budget_parameters(0.1, 1000) == 100
    assert budget_parameters(1.0, 1000) == 1000
    assert budget_parameters(250, 1000) == 250
    with pytest.raises(SelectionError, match="above 100%"):
        budget_parameters(2000, 1000)
    with pytest.raises(SelectionError, match="select_by"):
        check_budget(0.1, "head")


def test_select_takes_the_most_important_that_fit():
    scores = {"encoder.e.blocks.0.attn.value": 5.0, "encoder.e.blocks.0.mlp.0": 4.0,
              "encoder.e.blocks.1.attn.out": 3.0, "encoder.e.blocks.1.attn.key": 0.1}
    sizes = {"encoder.e.blocks.0.attn.value": 10, "encoder.e.blocks.0.mlp.0": 50,
             "encoder.e.blocks.1.attn.out": 10, "encoder.e.blocks.1.attn.key": 10}
    # mlp.0 does not fit after attn.value; the next ones that fit are taken in rank order
    assert select(scores, sizes, 30) == ["encoder.e.blocks.0.attn.value",
                                         "encoder.e.blocks.1.attn.out",
                                         "encoder.e.blocks.1.attn.key"]
    # per layer: block 0 (mean 4.5, 60 parameters) before block 1 (mean 1.55)
    assert select(scores, sizes, 60, "layer") == ["encoder.e.blocks.0.attn.value",
                                                  "encoder.e.blocks.0.mlp.0"]
    with pytest.raises(SelectionError, match="less than the smallest module .10 LoRA"):
        select(scores, sizes, 9)
    with pytest.raises(SelectionError, match="smallest layer"):
        select(scores, sizes, 19, "layer")


def test_scores_follow_the_papers_rule_and_the_selection_file(tmp_path):
    torch.manual_seed(0)
    model = Toy()
    inject_lora(model, {n: 2 for n in candidates(model)}, alpha=4.0)
    stats = GradStats(model)
    grads = {}
    for step in range(3):
        model.zero_grad()
        for n, p in stats.params.items():
            p.grad = torch.randn_like(p) * (1 + step)
            grads.setdefault(n, []).append(p.grad.clone())
        stats.add(batch_size=4)
    scores = stats.scores()
    name = "decoder.decoders.blocks.1.cross_attn.value"
    expect_a = sum((g ** 2) for g in grads[name + ".lora_A"]).mean().item() / 12
    expect_b = sum((g ** 2) for g in grads[name + ".lora_B"]).mean().item() / 12
    assert scores[name]["A"] == pytest.approx(expect_a)
    assert scores[name]["score"] == pytest.approx((expect_a + expect_b) / 2)

    sel = make_selection(model, stats, rank=2, budget=0.25, seed=7)
    assert sel["raw_lora_params"] == sum(2 * (m.in_features + m.out_features)
                                         for m in lora_modules(model).values())
    assert sel["chosen_params"] <= sel["budget_params"] == int(0.25 * sel["raw_lora_params"])
    assert sel["share"] == pytest.approx(sel["chosen_params"] / sel["raw_lora_params"])
    assert [m["rank"] for m in sel["modules"]] == list(range(1, len(candidates(Toy())) + 1))
    assert sel["steps"] == 3 and sel["samples"] == 12 and sel["seed"] == 7
    assert set(sel["chosen"]) == {m["name"] for m in sel["modules"] if m["chosen"]}
    write_json(sel, tmp_path / "la_selection.json")
    plot_selection(sel, tmp_path / "la_selection.png")
    assert (tmp_path / "la_selection.png").stat().st_size > 10_000

    # stage 8: fresh LoRA on the chosen modules only; the trainable count is the JSON's
    fresh = Toy()
    create_la_lora_adapter(fresh, rank=2, alpha=4, selection=str(tmp_path / "la_selection.json"))
    assert sorted(lora_modules(fresh)) == sorted(sel["chosen"])
    assert count_parameters(fresh)[0] == sel["chosen_params"]
    assert all(not p.detach().any() for n, p in fresh.named_parameters() if n.endswith("lora_B"))


def test_selection_files_for_another_model_are_refused(tmp_path):
    path = tmp_path / "other.json"
    write_json({"chosen": ["decoder.decoders.blocks.11.attn.query"], "whisper_model": "small"},
               path)
    with pytest.raises(SelectionError, match="1 of its 1 modules do not exist in this model "
                       r"\(e.g. decoder.decoders.blocks.11.attn.query\); it was made for another "
                       "model .its whisper_model: small"):
        create_la_lora_adapter(Toy(), selection=str(path))
    with pytest.raises(SelectionError, match="file not found"):
        load_selection(tmp_path / "nowhere.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(SelectionError, match="not a selection file"):
        load_selection(tmp_path / "bad.json")
    from espnet_lalora.methods import AdapterConfigError

    with pytest.raises(AdapterConfigError, match="adapter_conf.selection is not set"):
        create_la_lora_adapter(Toy())
    assert not lora_modules(Toy())
