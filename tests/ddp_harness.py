"""A few optimizer steps of ESPnet's own training loop on every process of a launch (run by
tests/test_ddp.py through ``python -m espnet_lalora.bin.launch``, or alone for one process):

    python tests/ddp_harness.py --out DIR --steps N --method NAME=CONFIG ... -- <asr_train options>

Per method, as ESPnet's ``main_worker`` and ``Trainer.run`` do it: the model and its adapter,
the optimizer (the plugin's step hooks and loss terms), the scheduler, the distributed iterator
(each rank its slice of every batch), ``DistributedDataParallel`` and ``Trainer.train_one_epoch``
(loss times world size, gradient clipping, the optimizer step), timed. It writes
``DIR/<method>.rank<R>.pt``: the trainable parameters, the buffers, the AdaLoRA allocator's state
and, per step, this rank's loss and batch weight (the global loss is their weighted mean).
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

from espnet_lalora.quiet import quiet_espnet_imports

quiet_espnet_imports()

import torch  # noqa: E402
from espnet2.layers.create_adapter import create_adapter  # noqa: E402
from espnet2.torch_utils.set_all_random_seed import set_all_random_seed  # noqa: E402
from espnet2.train.distributed_utils import DistributedOption  # noqa: E402
from espnet2.train.reporter import Reporter  # noqa: E402
from espnet2.train.trainer import Trainer  # noqa: E402
from espnet2.schedulers.warmup_lr import WarmupLR  # noqa: E402
from espnet2.utils.build_dataclass import build_dataclass  # noqa: E402

from espnet_lalora.config import with_composed_config  # noqa: E402
from espnet_lalora.espnet_plugin import ASRTask  # noqa: E402


def run_method(name, config, espnet_argv, steps, out: Path, dist: DistributedOption):
    with tempfile.TemporaryDirectory() as tmp:
        args = ASRTask.get_parser().parse_args(
            with_composed_config(["--config", config, *espnet_argv, "--output_dir", tmp], tmp))
    args.distributed = dist.distributed
    set_all_random_seed(args.seed)
    model = ASRTask.build_model(args)
    if args.use_adapter:
        create_adapter(model, args.adapter, args.adapter_conf)
    optimizers = ASRTask.build_optimizers(args, model=model)
    assert args.scheduler == "warmuplr", args.scheduler
    schedulers = [WarmupLR(optimizers[0], **args.scheduler_conf)]
    records = []

    def record(module, inputs, output):  # registered last: the loss the trainer backpropagates
        if module.training:
            loss, _, weight = output
            records.append((float(loss.detach()), float(weight)))

    model.register_forward_hook(record)
    initial = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    if dist.distributed:
        dp_model = torch.nn.parallel.DistributedDataParallel(
            model, find_unused_parameters=args.unused_parameters)
    else:
        dp_model = model
    batches, epoch = [], 1  # the first `steps` batches of epochs 1, 2, ... (loaded beforehand)
    while len(batches) < steps:
        iterator = ASRTask.build_iter_factory(args, dist, mode="train").build_iter(epoch)
        batches += [batch for _, batch in zip(range(steps - len(batches)), iterator)]
        epoch += 1
    reporter = Reporter()
    reporter.set_epoch(1)
    options = Trainer.build_options(args)
    options.log_interval = 10 ** 6
    dp_model.train()
    started = time.perf_counter()
    with reporter.observe("train") as sub_reporter:
        Trainer.train_one_epoch(model=dp_model, iterator=batches, optimizers=optimizers,
                                schedulers=schedulers, scaler=None, reporter=sub_reporter,
                                summary_writer=None, options=options,
                                distributed_option=dist)
    seconds = time.perf_counter() - started
    state = {
        "seconds": seconds,
        "params": {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad},
        "initial": initial,
        "buffers": {n: b.detach().clone() for n, b in model.named_buffers()},
        "records": records,
        "steps": len(batches),
        "lr": optimizers[0].param_groups[0]["lr"],
    }
    tuner = getattr(model, "_adalora_tuner", None)
    if tuner is not None:  # the rank allocator: importance averages, the budget it reached
        allocator = tuner.rankallocator
        state["adalora"] = {
            "exp_avg_ipt": {k: v.clone() for k, v in allocator.exp_avg_ipt.items()},
            "budget": allocator.budget_schedule(int(model.adalora_step) - 1)[0],
            "lora_E_zeros": {n: (p == 0) for n, p in model.named_parameters()
                             if n.endswith(".lora_E.default")},
        }
    rank = dist.dist_rank if dist.distributed else 0
    torch.save(state, out / f"{name}.rank{rank}.pt")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--method", action="append", required=True, help="NAME=CONFIG")
    ours, espnet_argv = parser.parse_known_args()
    espnet_argv = [a for a in espnet_argv if a != "--"]
    # ESPnet's own distributed set-up: RANK, WORLD_SIZE, MASTER_* from the launcher
    args = ASRTask.get_parser().parse_known_args(espnet_argv)[0]
    from espnet2.train.distributed_utils import resolve_distributed_mode

    resolve_distributed_mode(args)
    dist = build_dataclass(DistributedOption, args)
    dist.init_options()
    dist.init_torch_distributed()
    ours.out.mkdir(parents=True, exist_ok=True)
    for item in ours.method:
        name, config = item.split("=", 1)
        run_method(name, config, espnet_argv, ours.steps, ours.out, dist)
    if dist.distributed:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
