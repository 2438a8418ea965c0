"""The LA-LoRA claim check: is a short pass before training enough to rank the modules?

The paper accumulates its scores over a whole raw-LoRA training run; stage 7 takes a few batches
before training. This script does both on the same model, data and seed:

1. short passes at the start (no update; 1, 2, 4, 8, 16 batches of epoch 1), as stage 7 does;
2. a full raw-LoRA training run (the config's optimizer, scheduler, grad_clip and max_epoch, ESPnet's
   training batches for each epoch) that accumulates the paper's scores at every step;

and compares them: Spearman rank correlation of the 96 module importances, and the overlap of the
chosen sets under the config's budget. Run from a recipe directory after stage 6, with stage 8's
options as ESPnet recorded them in the experiment's config.yaml. From egs2/mini_multi/asr1, after
`./run.sh --asr_config conf/train_la_lora.yaml`:

    PYTHONPATH=../../.. ../../../.venv/bin/python ../../../bench/la_claim_check.py \\
        --asr_exp exp/asr_train_la_lora --out exp/la_claim_check

Writes OUT/claim_check.json (all scores), OUT/full_selection.{json,png} and prints a summary.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from espnet_lalora.methods import get_method
from espnet_lalora.methods.la_lora import GradStats, make_selection, plot_selection, write_json
from espnet_lalora.methods.stage8 import build_model, train_batches
from espnet_lalora.methods.lora import ALL_LINEARS, add_lora, candidate_modules
from espnet_lalora.progress import Progress


def spearman(a, b):
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).correlation)


def compare(short: dict, full: dict) -> dict:
    names = [m["name"] for m in full["modules"]]
    s = {m["name"]: m["score"] for m in short["modules"]}
    f = {m["name"]: m["score"] for m in full["modules"]}
    fb = {m["name"]: m["score_B"] for m in full["modules"]}
    chosen_s, chosen_f = set(short["chosen"]), set(full["chosen"])
    k = len(chosen_f)
    top_s = {m["name"] for m in sorted(short["modules"], key=lambda m: m["rank"])[:k]}
    return {
        "spearman": spearman([s[n] for n in names], [f[n] for n in names]),
        "spearman_vs_full_B_only": spearman([s[n] for n in names], [fb[n] for n in names]),
        "chosen_short": len(chosen_s), "chosen_full": len(chosen_f),
        "chosen_overlap": len(chosen_s & chosen_f),
        "jaccard": len(chosen_s & chosen_f) / len(chosen_s | chosen_f),
        f"top{k}_overlap": len(top_s & chosen_f) / k,
    }


def layer_profile(sel: dict) -> dict:
    """Mean importance per layer, encoder and decoder (for the U-shape question)."""
    out = {}
    for part in ("encoder", "decoder"):
        layers = sorted({m["layer"] for m in sel["modules"] if m["part"] == part})
        out[part] = [sum(m["score"] for m in sel["modules"] if m["part"] == part and m["layer"] == i)
                     / sum(1 for m in sel["modules"] if m["part"] == part and m["layer"] == i)
                     for i in layers]
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--short_steps", default="1,2,4,8,16")
    parser.add_argument("--asr_exp", type=Path, required=True,
                        help="a la_lora experiment: its config.yaml and la_selection.json")
    ours = parser.parse_args(argv)
    steps = sorted(int(s) for s in ours.short_steps.split(","))

    from espnet2.tasks.abs_task import scheduler_classes
    from espnet2.torch_utils.device_funcs import to_device

    from espnet_lalora.espnet_plugin import ASRTask

    import yaml

    args = argparse.Namespace(**yaml.safe_load((ours.asr_exp / "config.yaml").read_text()))
    method = get_method("la_lora")
    conf = method.parse_config({k: v for k, v in (args.adapter_conf or {}).items()
                                if k != "selection"})
    rank, budget, select_by = method.rank_of(conf), conf.budget, conf.select_by
    model = build_model(args)
    add_lora(model, candidate_modules(model, ALL_LINEARS), rank, conf)
    model.train()
    result = {"config": {"budget": budget, "select_by": select_by, "lora_rank": rank,
                         "max_epoch": args.max_epoch, "batch_size": args.batch_size,
                         "seed": args.seed}, "short": {}, "timing": {}}

    # 1. short passes (no update): snapshots after each of `steps` batches of epoch 1
    stats, selections = GradStats(model), {}
    t0 = time.monotonic()
    for i, (utt_ids, batch) in enumerate(train_batches(args, 1), 1):
        model.zero_grad(set_to_none=True)
        model(**to_device(batch, "cpu"))[0].backward()
        stats.add(len(utt_ids))
        if i in steps:
            selections[i] = make_selection(model, stats, rank, budget, select_by)
            result["timing"][f"short_{i}_s"] = round(time.monotonic() - t0, 2)
        if i >= steps[-1]:
            break
    model.zero_grad(set_to_none=True)

    # 2. the paper's way: scores summed over a whole raw-LoRA training run
    optimizer = ASRTask.build_optimizers(args, model=model)[0]
    scheduler = (scheduler_classes[args.scheduler](optimizer, **args.scheduler_conf)
                 if args.scheduler else None)
    full = GradStats(model)
    total = sum(len(train_batches(args, e)) for e in range(1, args.max_epoch + 1))
    progress = Progress(total, "raw LoRA training with score accumulation", unit="step", every=30)
    t0 = time.monotonic()
    for epoch in range(1, args.max_epoch + 1):
        for utt_ids, batch in train_batches(args, epoch):
            optimizer.zero_grad(set_to_none=True)
            loss = model(**to_device(batch, "cpu"))[0]
            loss.backward()
            full.add(len(utt_ids))
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            progress.update()
    result["timing"]["full_run_s"] = round(time.monotonic() - t0, 2)
    result["timing"]["full_run_steps"] = full.steps
    full_sel = make_selection(model, full, rank, budget, select_by, steps=full.steps)
    write_json(full_sel, ours.out / "full_selection.json")
    plot_selection(full_sel, ours.out / "full_selection.png",
                   title=f"importance over a full raw-LoRA run ({full.steps} steps); red: chosen "
                         f"({full_sel['num_chosen']} modules, {100 * full_sel['share']:.1f}%)")

    for i, sel in selections.items():
        result["short"][i] = compare(sel, full_sel)
        result["short"][i]["samples"] = sel["samples"]
    if (ours.asr_exp / "la_selection.json").is_file():
        stage7 = json.loads((ours.asr_exp / "la_selection.json").read_text())
        result["stage7"] = compare(stage7, full_sel)
        result["stage7"]["steps"] = stage7["steps"]
    result["layer_profile"] = {"full": layer_profile(full_sel),
                               **{f"short_{i}": layer_profile(s) for i, s in selections.items()}}
    result["chosen_full"] = full_sel["chosen"]
    result["chosen_short"] = {i: s["chosen"] for i, s in selections.items()}
    write_json(result, ours.out / "claim_check.json")

    print("| short pass (batches) | utterances | Spearman vs full | same chosen | Jaccard |",
          file=sys.stderr)
    print("|---|---|---|---|---|", file=sys.stderr)
    for i, c in result["short"].items():
        print(f"| {i} | {c['samples']} | {c['spearman']:.3f} | {c['chosen_overlap']} of "
              f"{c['chosen_full']} | {c['jaccard']:.2f} |", file=sys.stderr)
    print(json.dumps(result["timing"]), file=sys.stderr)


if __name__ == "__main__":
    main()
