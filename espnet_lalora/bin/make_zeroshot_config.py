"""Write the ESPnet ``config.yaml`` of an untrained Whisper model (the zero-shot baseline).

It is the training config as ESPnet itself would write it, with the adapter removed and the
input padded to 30 s, as Whisper was trained. Decode it with ``asr_inference`` and no model file.
"""

import argparse
import sys
from pathlib import Path

from espnet_lalora.config import ConfigError, write_config, zero_shot_config


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--asr_config", required=True, type=Path)
    parser.add_argument("--token_list", required=True, type=Path)
    parser.add_argument("--whisper_model", default=None)
    parser.add_argument("--out", required=True, type=Path, help="config.yaml to write")
    args = parser.parse_args(argv)
    try:
        config = zero_shot_config(args.asr_config, args.token_list, args.whisper_model)
    except ConfigError as e:
        sys.exit(f"error: --asr_config {e}")
    write_config(config, args.out)


if __name__ == "__main__":
    main()
