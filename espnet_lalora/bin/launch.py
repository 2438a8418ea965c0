"""Run a Python command on N processes per node and M nodes with torch.distributed (the driver's
launcher of stages 7 and 8; one process needs no launcher).

    python -m espnet_lalora.bin.launch --nproc 2 [--num_nodes 2 --node_rank R
        --master_addr HOST --master_port 29500] --log exp/x/train.log -- -m espnet_lalora.bin.asr_train ...

PyTorch's elastic launcher (torchrun) starts the processes and sets RANK, LOCAL_RANK, WORLD_SIZE,
MASTER_ADDR and MASTER_PORT, which ESPnet's trainer reads (its ``--multiprocessing_distributed
false`` mode; the caller passes ``--dist_backend``). Why torchrun and not ESPnet's own spawning
(``--multiprocessing_distributed true``): ESPnet spawns only for ngpu > 1 (never on CPU, so the
gloo tests could not use it), while torchrun runs the same code on GPUs and CPUs, one node or
several (a static rendezvous at node 0's address), and it watches its processes: when one dies,
it stops the others at once instead of leaving them blocked in a collective.

Rank 0 writes to this command's stdout/stderr; rank R > 0 writes to ``--log`` with ``.rankR``
before its suffix (``train.rank1.log``). A failed process is reported by rank, cause and log.
"""

import argparse
import os
import sys
from pathlib import Path

from espnet_lalora.distributed import RANK_LOG, rank_log


def check(args) -> None:
    """Bad values stop here, with the option named."""
    if args.nproc < 1:
        sys.exit(f"error: --nproc must be at least 1, got {args.nproc}")
    if args.num_nodes < 1:
        sys.exit(f"error: --num_nodes must be at least 1, got {args.num_nodes}")
    if not 0 <= args.node_rank < args.num_nodes:
        sys.exit(f"error: --node_rank {args.node_rank} must be in 0..{args.num_nodes - 1} "
                 f"(--num_nodes {args.num_nodes})")
    if args.num_nodes > 1 and not args.master_addr:
        sys.exit(f"error: --master_addr is required with --num_nodes {args.num_nodes}: the host "
                 "name or address of node rank 0, reachable from every node")
    if not 1 <= args.master_port <= 65535:
        sys.exit(f"error: --master_port must be a TCP port (1-65535), got {args.master_port}")
    if not args.command:
        sys.exit("error: no command to launch (give it after --)")


def describe(rank, failure, main_log) -> str:
    if failure.exitcode is not None and failure.exitcode < 0:
        cause = f"was killed by {failure.signal_name()}"
    else:
        cause = f"exited with code {failure.exitcode}"
    where = f"; its log: {rank_log(os.path.abspath(main_log), rank)}" if main_log else ""
    return (f"error: rank {rank} (local rank {failure.local_rank}, pid {failure.pid}) {cause}"
            f"{where}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nproc", type=int, default=1, help="processes on this node")
    parser.add_argument("--num_nodes", type=int, default=1)
    parser.add_argument("--node_rank", type=int, default=0)
    parser.add_argument("--master_addr", default="", help="node rank 0's host (num_nodes > 1)")
    parser.add_argument("--master_port", type=int, default=29500)
    parser.add_argument("--log", default="", help="rank 0's log; rank R writes <stem>.rankR<suffix>")
    parser.add_argument("command", nargs=argparse.REMAINDER,
                        help="-- then the arguments of python (e.g. -m espnet_lalora.bin.asr_train ...)")
    args = parser.parse_args(argv)
    if args.command[:1] == ["--"]:
        args.command = args.command[1:]
    check(args)

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import config_from_args, elastic_launch, parse_args

    if args.log:
        os.environ[RANK_LOG] = str(Path(args.log).resolve())
    torchrun = ["--nnodes", str(args.num_nodes), "--nproc_per_node", str(args.nproc),
                "--node_rank", str(args.node_rank), "--max_restarts", "0", "--no_python"]
    if args.num_nodes == 1:
        torchrun += ["--standalone"]  # a free local port: runs side by side never collide
    else:  # static rendezvous at node 0, as on a cluster
        torchrun += ["--master_addr", args.master_addr, "--master_port", str(args.master_port)]
    launch_args = parse_args(torchrun + [sys.executable, *args.command])
    if args.num_nodes == 1:  # what torch.distributed.run.run() does for --standalone
        import uuid

        launch_args.rdzv_backend, launch_args.rdzv_endpoint = "c10d", "localhost:0"
        launch_args.rdzv_id = str(uuid.uuid4())
    config, cmd, cmd_args = config_from_args(launch_args)
    world = args.nproc * args.num_nodes
    print(f"[espnet_lalora] launch: {args.nproc} process(es) on node {args.node_rank} of "
          f"{args.num_nodes} (world size {world})", file=sys.stderr, flush=True)
    try:
        elastic_launch(config=config, entrypoint=cmd)(*cmd_args)
    except ChildFailedError as e:
        # The process that was killed (a signal) is the cause; the others then failed in a
        # collective or were stopped by the launcher.
        failures = sorted(e.failures.items(),
                          key=lambda item: (item[1].exitcode is None or item[1].exitcode >= 0,
                                            item[1].timestamp, item[0]))
        for rank, failure in failures:
            print(describe(rank, failure, args.log), file=sys.stderr)
        print(f"error: the launch stopped all {args.nproc} process(es) of node {args.node_rank}",
              file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
