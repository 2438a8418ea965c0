"""Trainable parameters of each method, without training or weights:

    python -m espnet_lalora.bin.param_report --asr_config conf/train_vo_lora.yaml
    python -m espnet_lalora.bin.param_report --conf_dir conf            # every training config
    python -m espnet_lalora.bin.param_report --conf_dir conf --whisper_model large-v2

prints, per config: the method, trainable parameters, % of raw LoRA (rank 8 on every block
Linear of the same model), % of the model, and the adapted modules by type.

    python -m espnet_lalora.bin.param_report --conf_dir conf --memory --batch 8 \
        --whisper_model large-v3 large-v3-turbo

estimates training memory instead (espnet_lalora.memory): weights, gradients + Adam state and
activations at the stated batch (30-s padded input, --text_tokens per utterance), in GiB, in
float32 and with 16-bit AMP, without and with activation checkpointing.
"""

import argparse
import sys
from pathlib import Path

from espnet_lalora.config import ConfigError, load_config
from espnet_lalora.methods import AdapterConfigError, method_of
from espnet_lalora.methods.lora import DEFAULT_RANK
from espnet_lalora.params import parameter_report, whisper_skeleton
from espnet_lalora.whisper_sizes import ALIASES, SIZES, size_of


def report_for_config(path: Path, whisper_model=None, reference_rank=DEFAULT_RANK,
                      prepared=None) -> dict:
    """The report of one config on a weightless skeleton. A method with a stage 7 (LA-LoRA) is
    counted from ``prepared`` (its stage-7 output) or else described by what is known before."""
    config = load_config(path)
    name = whisper_model or (config.get("encoder_conf") or {}).get("whisper_model", "base")
    model = whisper_skeleton(name)
    method, conf = method_of(config)
    if method is not None and method.prepare_conf_key:
        if prepared:
            config["adapter_conf"] = dict(config.get("adapter_conf") or {},
                                          **{method.prepare_conf_key: str(prepared)})
            method, conf = method_of(config)
        else:
            return {"config": str(path), "method": method.name, "whisper_model": name,
                    "note": method.prepare_note(conf), "count": "chosen by stage 7",
                    "hint": "(--prepared FILE)"}
    note = method.count_note(conf) if method is not None else None
    if note is not None:  # a count that depends on the data or on another run
        return {"config": str(path), "method": method.name, "whisper_model": name,
                "note": note, "count": "depends", "hint": ""}
    if method is not None:
        method.inject(model, conf)
    report = parameter_report(model, method, reference_rank)
    report.update(config=str(path), whisper_model=name, total=sum(
        p.numel() for p in model.parameters()), dims=size_of(name).dims())
    return report


def memory_markdown(reports, workload) -> str:
    from dataclasses import replace

    from espnet_lalora.memory import GIB, training_memory

    modes = [("fp32", False, False), ("fp32 + ckpt", False, True), ("AMP", True, False),
             ("AMP + ckpt", True, True)]
    lines = [f"Training memory, GiB, batch {workload.batch} x {workload.audio_seconds:g} s "
             f"audio, {workload.text_tokens} tokens (Adam; framework overhead not included)", "",
             "| config | method | Whisper | trainable | weights fp32 | grads + Adam "
             "| activations fp32 | " + " | ".join(f"total {m[0]}" for m in modes) + " |",
             "|" + " --- |" * (7 + len(modes))]
    for r in reports:
        if "note" in r:
            continue
        est = {m: training_memory(r["dims"], r["total"], r["trainable"],
                                  replace(workload, amp=amp, checkpointing=ckpt))
               for m, amp, ckpt in modes}
        fp32 = est["fp32"]
        lines.append(f"| {Path(r['config']).name} | {r['method']} | {r['whisper_model']} | "
                     f"{r['trainable']:,} | {fp32['weights'] / GIB:.2f} | "
                     f"{fp32['gradients+adam'] / GIB:.2f} | {fp32['activations'] / GIB:.2f} | "
                     + " | ".join(f"{est[m[0]]['total'] / GIB:.1f}" for m in modes) + " |")
    return "\n".join(lines)


def compact_types(by_type: dict) -> str:
    """{"encoder attn.value": 6, ...} -> "encoder 6 x attn.value/attn.out; decoder ..." """
    parts = []
    for side in ("encoder", "decoder"):
        items = {k.split(" ", 1)[1]: n for k, n in by_type.items() if k.startswith(side)}
        if len(set(items.values())) == 1:
            parts.append(f"{side} {next(iter(items.values()))} x {'/'.join(items)}")
        elif items:
            parts.append(f"{side} " + ", ".join(f"{k} {n}" for k, n in items.items()))
    return "; ".join(parts)


def markdown(reports) -> str:
    lines = ["| config | method | Whisper | trainable | % of raw LoRA | % of model "
             "| adapted modules | by type (per layer type) |", "|" + " --- |" * 8]
    for r in reports:
        if "note" in r:  # a count not known from the config alone (e.g. before stage 7)
            lines.append(f"| {Path(r['config']).name} | {r['method']} | {r['whisper_model']} | "
                         f"{r['count']} | {r['note']} | | | {r['hint']} |")
            continue
        by_type = compact_types(r["adapted_by_type"])
        if r["trainable_bias_vectors"] and not r["adapted_modules"]:
            by_type = f"{r['trainable_bias_vectors']} bias vectors"
        lines.append(f"| {Path(r['config']).name} | {r['method']} | {r['whisper_model']} | "
                     f"{r['trainable']:,} | {r['percent_of_raw_lora']:.2f} | "
                     f"{r['trainable_percent_of_model']:.3f} | {r['adapted_modules']} | {by_type} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--asr_config", type=Path, nargs="+", help="ESPnet training config(s)")
    source.add_argument("--conf_dir", type=Path, help="every train_*.yaml in this folder")
    parser.add_argument("--whisper_model", choices=list(SIZES) + list(ALIASES), nargs="+",
                        help="Whisper size(s) (default: the config's encoder_conf.whisper_model)")
    parser.add_argument("--memory", action="store_true",
                        help="estimate training memory (see espnet_lalora.memory) instead")
    parser.add_argument("--batch", type=int, default=8, help="--memory: utterances per batch")
    parser.add_argument("--text_tokens", type=int, default=100,
                        help="--memory: decoder tokens per utterance")
    parser.add_argument("--reference_rank", type=int, default=DEFAULT_RANK,
                        help="rank of the raw LoRA that shares are given against")
    parser.add_argument("--prepared", "--la_selection", type=Path,
                        help="a method's stage-7 output to count (LA-LoRA: la_selection.json)")
    args = parser.parse_args(argv)
    configs = args.asr_config or sorted(args.conf_dir.glob("train_*.yaml"))
    if not configs:
        sys.exit(f"error: --conf_dir {args.conf_dir}: no train_*.yaml found")
    if args.batch < 1 or args.text_tokens < 1:
        sys.exit("error: --batch and --text_tokens must be at least 1")
    reports = []
    for size in args.whisper_model or [None]:
        for path in configs:
            if not path.is_file():
                sys.exit(f"error: --asr_config {path}: file not found")
            try:
                reports.append(report_for_config(path, size, args.reference_rank,
                                                 args.prepared))
            except (AdapterConfigError, ConfigError, ValueError) as e:
                sys.exit(f"error: {path}: {e}")
    if args.memory:
        from espnet_lalora.memory import Workload

        print(memory_markdown(reports, Workload(batch=args.batch, text_tokens=args.text_tokens)))
    else:
        print(markdown(reports))


if __name__ == "__main__":
    main()
