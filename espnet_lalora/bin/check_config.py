"""Check an ESPnet training config before any stage spends time on it: the file (and its
``base_config`` chain) parses, the adapter is a known method, its ``adapter_conf`` is valid
(rank >= 1, a budget in (0, 1], ...).

``--compose_to FILE`` writes the composed config that ESPnet reads. ``--print_info`` prints one
line for the driver: the method (``full`` without an adapter), the file its stage 7 writes and
the ``adapter_conf`` key stage 8 passes it in (``-`` where the method has no stage 7), then,
tab-separated, what else training reads (``Method.train_inputs``: files stage 8's stamp covers).
"""

import argparse
import sys
from pathlib import Path

from espnet_lalora.config import ConfigError, load_config, write_config
from espnet_lalora.methods import AdapterConfigError, method_of


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--asr_config", required=True, type=Path)
    parser.add_argument("--compose_to", type=Path, help="write the composed config here")
    parser.add_argument("--print_info", action="store_true")
    args = parser.parse_args(argv)
    where = f"--asr_config {args.asr_config}"
    try:
        config = load_config(args.asr_config)
        method, method_config = method_of(config)
    except ConfigError as e:
        sys.exit(f"error: --asr_config {e}")
    except AdapterConfigError as e:
        sys.exit(f"error: {where}: {e}")
    if args.compose_to:
        write_config(config, args.compose_to)
    if args.print_info:
        if method is None:
            print("full - -")
        else:
            inputs = "".join(f"\t{p}" for p in method.train_inputs(method_config))
            print(f"{method.name} {method.prepare_output or '-'} {method.prepare_conf_key or '-'}"
                  f"{inputs}")


if __name__ == "__main__":
    main()
