"""Stage 7: the pass that a method runs before training, where it has one (LA-LoRA: a short
gradient-statistics pass that selects the modules LoRA trains; the registry says which methods).

    python -m espnet_lalora.bin.prepare_method --out exp/asr_x/la_selection.json \\
        --config conf/train_la_lora.yaml <asr_train's data options> [the method's options]

Every option it does not know goes to ESPnet's asr_train parser, so the model, the preprocessing
and the training batches are those of stage 8 (ESPnet's iterator, epoch 1, same seed); what
remains goes to the method (LA-LoRA: ``--steps N``). ``--check FILE`` only checks that an output
made elsewhere fits this model. Under torchrun (WORLD_SIZE > 1) the method may share the work
among the processes (LA-LoRA: batches shared out, statistics summed; rank 0 writes).
"""

import argparse
import sys
from pathlib import Path

from espnet_lalora.quiet import quiet_espnet_imports

quiet_espnet_imports()

import espnet_lalora.espnet_plugin  # noqa: E402,F401  (the per-utterance language prompt, as stage 8)
from espnet_lalora.distributed import redirect_rank_output  # noqa: E402
from espnet_lalora.config import ConfigError, parse_asr_train_args  # noqa: E402
from espnet_lalora.methods import AdapterConfigError, get_method  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="the method's stage-7 output to write")
    parser.add_argument("--check", type=Path, help="only check this output against the model")
    ours, rest = parser.parse_known_args(argv)
    redirect_rank_output()  # launched with several processes: ranks > 0 log to their own file
    if (ours.out is None) == (ours.check is None):
        parser.error("give --out (run the pass) or --check FILE")
    import logging

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        args, method_argv = parse_asr_train_args(rest)
        if not args.use_adapter:
            raise AdapterConfigError("the config trains without an adapter: no stage 7")
        method = get_method(args.adapter)
        if method.prepare_output is None:
            raise AdapterConfigError(f"{method.name} has no stage 7 (a fixed placement)")
        if ours.check is not None:
            print(method.check_prepared(ours.check, args), file=sys.stderr)
        else:
            method.prepare(args, method_argv, ours.out)
    except (AdapterConfigError, ConfigError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
