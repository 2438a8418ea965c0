"""What a process started by the launcher (espnet_lalora.bin.launch, torchrun) needs to know of
its place: its rank, and its own log when it is not rank 0."""

import os
import sys
from pathlib import Path

RANK_LOG = "ESPNET_LALORA_RANK_LOG"  # the main log's path, handed to the processes


def rank_log(main_log: str, rank: int) -> Path:
    path = Path(main_log)
    return path if rank == 0 else path.with_name(f"{path.stem}.rank{rank}{path.suffix}")


def redirect_rank_output() -> None:
    """In a launched process of rank > 0: stdout and stderr into its own log (the ranks would
    otherwise interleave in rank 0's); the first line says which process it is."""
    main_log, rank = os.environ.get(RANK_LOG), int(os.environ.get("RANK", "0"))
    if not main_log or rank == 0:
        return
    path = rank_log(main_log, rank)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    print(f"[espnet_lalora] rank {rank} of {os.environ.get('WORLD_SIZE')}, pid {os.getpid()}, "
          f"local rank {os.environ.get('LOCAL_RANK')}", file=sys.stderr, flush=True)


def is_rank_zero() -> bool:
    return int(os.environ.get("RANK", "0")) == 0
