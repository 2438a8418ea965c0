"""Stage 9: merge the trained adapters into Whisper and export (see espnet_lalora.export).

Writes ``<asr_exp>/export/{merged/{config.yaml,model.pth}, adapter/adapter.pth,
whisper/model.pt, params.yaml}``, built in a temporary folder and moved into place."""

import argparse
import shutil
import sys
from pathlib import Path

from espnet_lalora.quiet import quiet_espnet_imports


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--asr_exp", required=True, type=Path)
    parser.add_argument("--checkpoint", default="valid.acc.ave.pth",
                        help="checkpoint file in --asr_exp (ESPnet's averaged model by default)")
    args = parser.parse_args(argv)
    for needed in (args.asr_exp / "config.yaml", args.asr_exp / args.checkpoint):
        if not needed.exists():
            sys.exit(f"error: {needed} not found; train first (stage 8) or pick --checkpoint "
                     "from the files in the experiment folder")
    quiet_espnet_imports()
    from espnet_lalora.datadir import replace_dir
    from espnet_lalora.export import export

    out = args.asr_exp / "export"
    tmp = args.asr_exp / "export.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    export(args.asr_exp, args.checkpoint, tmp, log=lambda m: print(m, file=sys.stderr))
    replace_dir(tmp, out)


if __name__ == "__main__":
    main()
