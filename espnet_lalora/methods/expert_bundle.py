"""The expert bundle (stage 9's ``export/experts``): the experts' tensors, their languages,
rank, alpha and modules, and a fingerprint of the base model they were trained on;
docs/experts.md documents the format."""

from pathlib import Path
from typing import List

import torch
import yaml
from torch import nn

from espnet_lalora.config import write_config
from espnet_lalora.methods.expert_layer import EXPERT_PARAMETERS, expert_modules

BUNDLE_FORMAT = 1


def base_fingerprint(model: nn.Module) -> List[float]:
    """A few numbers that tell Whisper checkpoints apart (same shapes, other weights)."""
    decoder = model.decoder.decoders
    emb = decoder.token_embedding.weight.detach().float()
    return [round(float(emb[:64].sum()), 4), round(float(emb[:64].abs().sum()), 4),
            len(decoder.blocks), int(emb.shape[1])]


def save_bundle(model: nn.Module, config: dict, out: Path, save):
    """``out/experts.pth`` (the experts' tensors by parameter name) and ``out/experts.yaml``
    (languages, rank, alpha, modules, base model), plus the training config to rebuild the
    model: docs/experts.md documents the format."""
    router = model.lang_router
    modules = expert_modules(model)
    any_module = next(iter(modules.values()))
    state = {f"{n}.{p}": getattr(m, p).detach().clone() for n, m in modules.items()
             for p in ("experts_A", "experts_B")}
    save(state, out / "experts.pth")
    meta = {"format": BUNDLE_FORMAT, "languages": router.languages,
            "rank": any_module.expert_rank,
            "alpha": any_module.expert_scaling * any_module.expert_rank,
            "modules": sorted(modules), "base": config["encoder_conf"].get("whisper_model"),
            "base_fingerprint": base_fingerprint(model)}
    write_config(meta, out / "experts.yaml")
    conf = dict(config, adapter="lang_experts",
                adapter_conf=dict(config.get("adapter_conf") or {}, languages=router.languages))
    write_config(conf, out / "config.yaml")
    return meta


def read_bundle(path: Path) -> dict:
    """experts.yaml of a bundle folder, checked; raises ValueError naming the file."""
    meta_path = Path(path) / "experts.yaml"
    if not meta_path.is_file() or not (Path(path) / "experts.pth").is_file():
        raise ValueError(f"{path}: not an expert bundle (experts.yaml and experts.pth; stage 9 "
                         "of a lang_experts run writes one in export/experts/)")
    meta = yaml.safe_load(meta_path.read_text(encoding="utf-8"))
    if meta.get("format") != BUNDLE_FORMAT:
        raise ValueError(f"{meta_path}: bundle format {meta.get('format')}, expected "
                         f"{BUNDLE_FORMAT}")
    return meta


def load_bundle_into(model: nn.Module, path: Path) -> dict:
    """Load a bundle's experts into a model built with the same experts (its config.yaml)."""
    meta = read_bundle(path)
    if base_fingerprint(model) != meta["base_fingerprint"]:
        raise ValueError(f"{path}: the experts were trained on another base model "
                         f"({meta['base']}, fingerprint {meta['base_fingerprint']}) than this one "
                         f"(fingerprint {base_fingerprint(model)})")
    state = torch.load(Path(path) / "experts.pth", map_location="cpu", weights_only=True)
    expected = {n for n in model.state_dict() if n.endswith(EXPERT_PARAMETERS)}
    if set(state) != expected:
        raise ValueError(f"{path}: its experts ({len(state)} tensors) do not fit this model's "
                         f"({len(expected)}): e.g. {sorted(set(state) ^ expected)[:2]}")
    model.load_state_dict(state, strict=False)
    return meta


def combine_bundles(paths: List[Path]) -> tuple:
    """One bundle from several (e.g. a language added later by a separate run): same base, rank,
    alpha and modules, no language twice. Returns (meta, state)."""
    metas = [read_bundle(p) for p in paths]
    first = metas[0]
    for p, meta in zip(paths[1:], metas[1:]):
        for key in ("base", "base_fingerprint", "rank", "alpha", "modules"):
            if meta[key] != first[key]:
                shown = (meta[key], first[key]) if key != "modules" else (
                    f"{len(meta[key])} modules", f"{len(first[key])} modules")
                raise ValueError(f"{p}: {key} {shown[0]} differs from {paths[0]}'s {shown[1]}; "
                                 "experts combine only when trained on the same base model with "
                                 "the same rank, alpha and modules")
    languages = [lang for m in metas for lang in m["languages"]]
    twice = sorted({lang for lang in languages if languages.count(lang) > 1})
    if twice:
        raise ValueError(f"language(s) {twice} have an expert in more than one of {paths}")
    states = [torch.load(Path(p) / "experts.pth", map_location="cpu", weights_only=True)
              for p in paths]
    state = {k: torch.cat([s[k] for s in states]) for k in states[0]}
    return dict(first, languages=languages), state
