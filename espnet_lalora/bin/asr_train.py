"""ESPnet's ``asr_train`` with the espnet-lalora methods registered (same options, same trainer).
A ``--config`` that names a ``base_config`` is composed first (espnet_lalora.config)."""

import sys
import tempfile
from pathlib import Path

from espnet_lalora.quiet import quiet_espnet_imports

quiet_espnet_imports()

from espnet_lalora.config import composes, load_config, write_config  # noqa: E402
from espnet_lalora.espnet_plugin import ASRTask  # noqa: E402


def main(cmd=None):
    cmd = list(sys.argv[1:] if cmd is None else cmd)
    with tempfile.TemporaryDirectory() as tmp:
        for i, arg in enumerate(cmd[:-1]):
            if arg == "--config" and composes(cmd[i + 1]):
                composed = Path(tmp) / "config.yaml"
                write_config(load_config(cmd[i + 1]), composed)
                cmd[i + 1] = str(composed)
        ASRTask.main(cmd=cmd)


if __name__ == "__main__":
    main()
