"""ESPnet's ``asr_train`` with the espnet-lalora methods registered (same options, same trainer).
A ``--config`` that names a ``base_config`` is composed first (espnet_lalora.config).

``--prepare_out FILE [--prepare_args '...']``: first run the method's stage-7 pass in this
process (the driver does this when stages 7 and 8 run together on one process: the pass then
shares the imports and start-up of training), write FILE and train on it.
"""

import argparse
import shlex
import sys
import tempfile
from pathlib import Path

from espnet_lalora.quiet import quiet_espnet_imports

quiet_espnet_imports()

from espnet_lalora.config import parse_asr_train_args, with_composed_config  # noqa: E402
from espnet_lalora.espnet_plugin import ASRTask  # noqa: E402
from espnet_lalora.methods import AdapterConfigError, get_method  # noqa: E402


def main(cmd=None):
    ours = argparse.ArgumentParser(add_help=False)
    ours.add_argument("--prepare_out", type=Path)
    ours.add_argument("--prepare_args", default="")
    options, cmd = ours.parse_known_args(sys.argv[1:] if cmd is None else cmd)
    if options.prepare_out is not None:
        import logging

        logging.basicConfig(level=logging.INFO, format="%(message)s")
        args, _ = parse_asr_train_args(cmd)
        try:
            method = get_method(args.adapter)
            if method.prepare_output is None:
                raise AdapterConfigError(f"--prepare_out: {method.name} has no stage 7")
            method.prepare(args, shlex.split(options.prepare_args), options.prepare_out)
        except AdapterConfigError as e:
            sys.exit(f"error: {e}")
        logging.getLogger().handlers.clear()  # ESPnet's main sets up its own logging
        cmd += ["--adapter_conf", f"{method.prepare_conf_key}={options.prepare_out.resolve()}"]
    with tempfile.TemporaryDirectory() as tmp:
        ASRTask.main(cmd=with_composed_config(cmd, tmp))


if __name__ == "__main__":
    main()
