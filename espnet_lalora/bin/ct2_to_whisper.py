"""Convert a CTranslate2 (faster-whisper) Whisper model into an openai-whisper checkpoint.

The output is what ``whisper.load_model(path)`` and ESPnet's Whisper frontend load:
``{"dims": ModelDimensions fields, "model_state_dict": ...}``.

Example:
  python -m espnet_lalora.bin.ct2_to_whisper --ct2_model ~/.cache/espnet_lalora/ct2/whisper-base \\
      --output base.pt
"""

import argparse
import sys
from pathlib import Path

import torch


def get_parser():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ct2_model", required=True, type=Path,
                        help="a CTranslate2 model folder (holding model.bin) or the model.bin itself")
    parser.add_argument("--output", required=True, type=Path, help="checkpoint to write (.pt)")
    parser.add_argument("--dtype", choices=["float16", "float32"], default="float16",
                        help="tensor type in the checkpoint (official checkpoints are float16)")
    return parser


def main(argv=None):
    args = get_parser().parse_args(argv)
    from espnet_lalora.ct2_whisper import CT2FormatError, convert_ct2_model

    model_bin = args.ct2_model / "model.bin" if args.ct2_model.is_dir() else args.ct2_model
    if not model_bin.is_file():
        sys.exit(f"error: --ct2_model: {model_bin} does not exist; give a CTranslate2 model "
                 "folder (with model.bin) or its model.bin")
    try:
        dims = convert_ct2_model(model_bin, args.output, getattr(torch, args.dtype))
    except CT2FormatError as e:
        sys.exit(f"error: --ct2_model: {e}")
    print(f"wrote {args.output}: {dims}")


if __name__ == "__main__":
    main()
