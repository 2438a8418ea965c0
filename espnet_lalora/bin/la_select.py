"""Stage 7 (la_lora): the short gradient-statistics pass that chooses the modules LoRA trains.

    python -m espnet_lalora.bin.la_select --out exp/asr_x/la_selection.json [--steps N] \\
        --config conf/train_la_lora.yaml <the data options of asr_train (stage 8)>

Every option it does not know goes to ESPnet's asr_train parser, so the model, the preprocessing
and the training batches are those of stage 8 (ESPnet's iterator, epoch 1, same seed). Writes the
selection JSON and, next to it, the heat map (.png). ``--check FILE`` only checks that a selection
made elsewhere fits this model. Under torchrun (WORLD_SIZE > 1) the batches are shared out among
the processes and the statistics summed (gloo on CPU, nccl on GPUs); rank 0 writes.
"""

import argparse
import os
import sys
import time
from pathlib import Path

from espnet_lalora.quiet import quiet_espnet_imports

quiet_espnet_imports()

import torch  # noqa: E402

from espnet_lalora.la_lora import (SelectionError, budget_parameters, check_budget,  # noqa: E402
                                   load_selection, lora_size, make_selection, plot_selection,
                                   run_pass, select, write_json)


def parse_espnet_args(espnet_argv):
    from espnet_lalora.espnet_plugin import ASRTask

    return ASRTask.get_parser().parse_args(espnet_argv)


def build(args, with_lora: bool = True):
    """(model with LoRA on every candidate module, the candidate names) from asr_train's options,
    as stage 8 builds the model (same seed), without the la_lora adapter."""
    from espnet2.torch_utils.set_all_random_seed import set_all_random_seed

    from espnet_lalora.espnet_plugin import ASRTask
    from espnet_lalora.lora import freeze_all_but, inject_lora, is_lora_parameter
    from espnet_lalora.methods import ALL_LINEARS, candidate_modules

    conf = dict(args.adapter_conf or {})
    set_all_random_seed(args.seed)
    model = ASRTask.build_model(args)
    names = candidate_modules(model, ALL_LINEARS)
    if with_lora:
        rank = conf.get("rank", 8)
        alpha = float(conf.get("alpha") if conf.get("alpha") is not None else rank)
        inject_lora(model, {n: rank for n in names}, alpha=alpha)
        freeze_all_but(model, is_lora_parameter)
    return model, names


def train_batches(args, epoch: int = 1):
    """ESPnet's training iterator for ``epoch``, as its trainer builds it (one process)."""
    from espnet2.train.distributed_utils import DistributedOption

    from espnet_lalora.espnet_plugin import ASRTask

    factory = ASRTask.build_iter_factory(args, DistributedOption(distributed=False), mode="train")
    return factory.build_iter(epoch)


def init_distributed(ngpu: int):
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    dist.init_process_group(backend="nccl" if ngpu > 0 else "gloo")
    if ngpu > 0:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return dist.get_rank(), dist.get_world_size()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="la_selection.json to write")
    parser.add_argument("--steps", type=int, default=None,
                        help="batches in the pass (default: adapter_conf.la_steps, else 8)")
    parser.add_argument("--check", type=Path, help="only check this selection against the model")
    ours, espnet_argv = parser.parse_known_args(argv)
    if (ours.out is None) == (ours.check is None):
        parser.error("give --out (run the pass) or --check FILE")

    t0 = time.monotonic()
    args = parse_espnet_args(espnet_argv)
    model, names = build(args, with_lora=ours.check is None)
    conf = dict(args.adapter_conf or {})
    try:
        if ours.check is not None:
            sel = load_selection(ours.check, candidates=names)
            print(f"{ours.check}: {len(sel['chosen'])} modules, all in this model "
                  f"(share {100 * sel.get('share', float('nan')):.2f}% of raw LoRA at rank "
                  f"{sel.get('lora_rank')})", file=sys.stderr)
            return
        budget, select_by = conf.get("budget", 0.1), conf.get("select_by", "module")
        rank = conf.get("rank", 8)
        check_budget(budget, select_by)
        # A budget too small for one module fails now, not after the pass.
        sizes = {n: lora_size(model.get_submodule(n), rank) for n in names}
        select(dict.fromkeys(names, 0.0), sizes, budget_parameters(budget, sum(sizes.values())),
               select_by)
    except SelectionError as e:
        sys.exit(f"error: {e}")

    steps = ours.steps or conf.get("la_steps", 8)
    if steps < 1:
        sys.exit(f"error: --steps / adapter_conf.la_steps = {steps}: must be >= 1")
    rank_id, world = init_distributed(args.ngpu)
    device = f"cuda:{torch.cuda.current_device()}" if args.ngpu > 0 else "cpu"
    model.to(device)
    batches = train_batches(args)
    if steps > len(batches):
        print(f"la_select: the epoch has {len(batches)} batches; the pass uses all of them",
              file=sys.stderr)
        steps = len(batches)
    from espnet_lalora.progress import Progress

    mine = len(range(rank_id, steps, world))
    progress = Progress(mine, "LA selection pass", unit="batch", every=2.0) if rank_id == 0 else None
    t1 = time.monotonic()
    stats = run_pass(model, batches, steps, device, progress, rank_id, world)
    pass_s = time.monotonic() - t1
    if rank_id != 0:
        return
    sel = make_selection(model, stats, rank, budget, select_by, seed=args.seed,
                         world_size=world, whisper_model=args.encoder_conf.get("whisper_model"),
                         batch_size=args.batch_size, pass_seconds=round(pass_s, 2),
                         total_seconds=round(time.monotonic() - t0, 2),
                         train_data=[p[0] for p in args.train_data_path_and_name_and_type])
    write_json(sel, ours.out)
    plot_selection(sel, ours.out.with_suffix(".png"))
    print(f"la_select: {stats.steps} batches, {stats.samples} utterances in {pass_s:.1f} s "
          f"(all: {time.monotonic() - t0:.1f} s); chose {sel['num_chosen']} of "
          f"{sel['num_candidates']} modules, {sel['chosen_params']:,} parameters = "
          f"{100 * sel['share']:.2f}% of raw LoRA (budget {budget}); wrote {ours.out} and "
          f"{ours.out.with_suffix('.png')}", file=sys.stderr)


if __name__ == "__main__":
    main()
