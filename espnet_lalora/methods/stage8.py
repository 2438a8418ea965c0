"""What a method sees of stage 8 outside ESPnet's trainer: the model and the training batches as
``asr_train`` builds them, the number of optimizer steps the run will take, and the process group
of a torchrun pass. Stage 7 (LA-LoRA's pass) and AdaLoRA's budget schedule use them."""

import os

import torch
from torch import nn


def build_model(args) -> nn.Module:
    """The base model as asr_train builds it for stage 8 (same seed), without the adapter. The
    caller imports espnet_lalora.espnet_plugin first (as asr_train does), so that the batches
    carry each utterance's own language prompt."""
    from espnet2.torch_utils.set_all_random_seed import set_all_random_seed

    from espnet2.tasks.asr import ASRTask  # the plugin's subclass builds the same model

    set_all_random_seed(args.seed)
    return ASRTask.build_model(args)


def train_batches(args, epoch: int = 1):
    """ESPnet's training iterator for ``epoch``, as its trainer builds it (one process)."""
    from espnet2.train.distributed_utils import DistributedOption

    from espnet2.tasks.asr import ASRTask

    factory = ASRTask.build_iter_factory(args, DistributedOption(distributed=False), mode="train")
    return factory.build_iter(epoch)


def optimizer_steps(args) -> int:
    """The optimizer steps of the whole run: epochs x steps per epoch. ESPnet's trainer makes
    the same batches on every rank (each rank takes a slice of each batch), and
    ``num_iters_per_epoch`` (when set) is already the iterator's length."""
    return args.max_epoch * steps_in_epoch(len(train_batches(args, 1)), args.accum_grad)


def steps_in_epoch(batches: int, accum_grad: int) -> int:
    """ESPnet steps after every accum_grad-th batch of an epoch (``iiter % accum_grad == 0``):
    the batches left over at its end never make a step of their own."""
    return batches // max(1, accum_grad)


def init_distributed(ngpu: int):
    """(rank, world size) under torchrun (WORLD_SIZE > 1: gloo on CPU, nccl on GPUs), else (0, 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    dist.init_process_group(backend="nccl" if ngpu > 0 else "gloo")
    if ngpu > 0:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return dist.get_rank(), dist.get_world_size()
