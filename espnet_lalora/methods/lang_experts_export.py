"""Stage 9 of ``lang_experts``: besides the uniform fusion (``export/merged``, ``whisper``,
``ct2``, which the generic export writes), the expert bundle (``export/experts``: routed
decoding), one merged model per language (``export/expert_<lang>``), the fusion with weights
learned on the dev set (``export/fused_learned``), and two heat maps: how alike the experts'
updates are per module, and the learned fusion weights."""

import copy
import json
from pathlib import Path

import torch
from torch import nn

from espnet_lalora.config import write_config
from espnet_lalora.fileio import atomic_path
from espnet_lalora.methods.expert_bundle import save_bundle
from espnet_lalora.methods.expert_layer import expert_modules, merge_with_weights
from espnet_lalora.methods.module_grid import Panel, plot_panels
from espnet_lalora.progress import Progress


def expert_similarity(model: nn.Module) -> dict:
    """{"lang_a/lang_b": {module: cosine of the two experts' delta-W}}"""
    router = model.lang_router
    langs = router.languages
    out = {}
    with torch.no_grad():
        for name, m in expert_modules(model).items():
            deltas = [(m.experts_B[e] @ m.experts_A[e]).flatten() for e in range(len(langs))]
            for i in range(len(langs)):
                for j in range(i + 1, len(langs)):
                    cos = torch.nn.functional.cosine_similarity(deltas[i], deltas[j], dim=0)
                    out.setdefault(f"{langs[i]}/{langs[j]}", {})[name] = round(float(cos), 5)
    return out


def dev_batches(args, batch_size: int = 8):
    """The dev set (``valid_data_path_and_name_and_type`` of the training config) as ESPnet's
    inference iterator yields it: the same preprocessing (prompt, tokens) as validation (stage 9
    has imported espnet_lalora.espnet_plugin, which gives each utterance its language prompt)."""
    from espnet2.tasks.asr import ASRTask

    return ASRTask.build_streaming_iterator(
        data_path_and_name_and_type=args.valid_data_path_and_name_and_type, dtype="float32",
        batch_size=batch_size, key_file=None, num_workers=0,
        preprocess_fn=ASRTask.build_preprocess_fn(args, False),
        collate_fn=ASRTask.build_collate_fn(args, False), allow_variable_data_keys=False,
        inference=False)


def learn_fusion(model: nn.Module, args, epochs: int, lr: float, log=print) -> dict:
    """Fusion weights (one per expert and module group) that minimize ESPnet's loss on the dev
    set, the experts frozen; starts from the uniform fusion. Returns {group: weights}."""
    router = model.lang_router
    groups = sorted({m.group for m in expert_modules(model).values()})
    n = len(router.languages)
    router.fusion = nn.ParameterDict({g: nn.Parameter(torch.full((n,), 1.0 / n))
                                      for g in groups})
    for p in model.parameters():
        p.requires_grad_(False)
    for p in router.fusion.parameters():
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(router.fusion.parameters(), lr=lr)
    model.eval()  # Whisper has no dropout; eval keeps ESPnet's validation behaviour
    batches = list(dev_batches(args))
    progress = Progress(epochs * len(batches), "learning fusion weights on the dev set", "batch")
    history = []
    for epoch in range(epochs + 1):
        total, count = 0.0, 0
        for _, batch in batches:
            router.mode = "fused"
            loss, _, _ = model(**batch)
            router.mode = "fused"  # the forward pre-hook routes by text; keep the fusion
            if epoch < epochs:
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                progress.update(1)
            total += float(loss) * len(batch["speech"])
            count += len(batch["speech"])
        history.append(total / count)
        if epoch < epochs:
            log(f"fusion weights: epoch {epoch + 1}/{epochs}, dev loss during the pass "
                f"{history[-1]:.4f}")
    log(f"fusion weights: dev loss {history[0]:.4f} (uniform, before) -> {history[-1]:.4f}")
    weights = {g: p.detach().clone() for g, p in router.fusion.items()}
    router.fusion = None
    router.mode = "route"
    return {"weights": weights, "dev_loss": history}


def _write_json(path: Path, content):
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(content, indent=1) + "\n", encoding="utf-8")


def export_experts(model: nn.Module, args, config: dict, adapter_conf, out: Path, save,
                   log=print) -> dict:
    """Everything of stage 9 that only language experts have; returns report entries."""
    languages = model.lang_router.languages
    meta = save_bundle(model, config, out / "experts", save)
    log(f"wrote {out / 'experts'}: {len(languages)} experts ({', '.join(languages)}), rank "
        f"{meta['rank']}, {len(meta['modules'])} modules (routed decoding)")
    merged_config = dict(config, use_adapter=False, adapter_conf={})
    for lang in languages:
        one = copy.deepcopy(model)
        merge_with_weights(one, one_language=lang)
        save(one.state_dict(), out / f"expert_{lang}" / "model.pth")
        write_config(merged_config, out / f"expert_{lang}" / "config.yaml")
    log(f"wrote one merged model per language: {', '.join(f'expert_{l}' for l in languages)}")

    similarity = expert_similarity(model)
    _write_json(out / "expert_similarity.json", similarity)
    plot_panels([Panel(f"cosine of delta-W, {pair}", values, "cosine similarity")
                 for pair, values in similarity.items()], out / "expert_similarity.png",
                "How alike the language experts' updates are, per module")
    report = {"experts": languages,
              "expert_similarity_mean": {p: round(sum(v.values()) / len(v), 4)
                                         for p, v in similarity.items()}}

    if adapter_conf.fusion_epochs > 0:
        learned = learn_fusion(model, args, adapter_conf.fusion_epochs, adapter_conf.fusion_lr,
                               log)
        fused = copy.deepcopy(model)
        merge_with_weights(fused, learned["weights"])
        save(fused.state_dict(), out / "fused_learned" / "model.pth")
        write_config(merged_config, out / "fused_learned" / "config.yaml")
        table = {g: [round(float(x), 5) for x in w] for g, w in learned["weights"].items()}
        _write_json(out / "fusion_weights.json", {"languages": languages,
                                                   "granularity": adapter_conf.fusion_granularity,
                                                   "dev_loss": learned["dev_loss"],
                                                   "weights": table})
        by_module = {}
        for name, m in expert_modules(model).items():
            by_module[name] = learned["weights"][m.group]
        plot_panels([Panel(f"weight of the {lang} expert", {n: float(w[i])
                                                           for n, w in by_module.items()},
                           "fusion weight") for i, lang in enumerate(languages)],
                    out / "fusion_weights.png",
                    f"Fusion weights learned on the dev set (uniform start {1 / len(languages):.2f})")
        report["fusion_dev_loss"] = [round(x, 4) for x in learned["dev_loss"]]
        log(f"wrote {out / 'fused_learned'} (fusion weights learned on the dev set; "
            "fusion_weights.{json,png})")
    return report


def decode_modes(exp: Path, config: dict) -> list:
    """Stage 10 decodes of a lang_experts run: (decode dir suffix, config, model, options)."""
    export = exp / "export"
    modes = [("", export / "merged" / "config.yaml", export / "merged" / "model.pth", "")]
    conf = (config.get("adapter_conf") or {})
    if conf.get("fusion_epochs", 3) > 0:
        modes.append(("_fused_learned", export / "fused_learned" / "config.yaml",
                      export / "fused_learned" / "model.pth", ""))
    bundle = export / "experts"
    modes.append(("_routed", bundle / "config.yaml", bundle / "experts.pth", "--route utt2lang"))
    modes.append(("_routed_lid", bundle / "config.yaml", bundle / "experts.pth", "--route lid"))
    # the language detected by the fused experts (fine-tuned on these languages), not the base
    modes.append(("_routed_lid_fused", bundle / "config.yaml", bundle / "experts.pth",
                  "--route lid --lid_by fused"))
    return modes

