"""What stage 10 decodes of a trained experiment and where: one line per decoding,
``@suffix<TAB>config<TAB>model file<TAB>decoder options`` (``@``: a suffix may be empty, and a
shell's ``read`` would skip an empty first field); the decode dir is
``decode_<inference tag><suffix>/<test set>``. The method says (``Method.decode_modes``): the
merged export for most; language experts add their learned fusion and their routed decodings.
``--lid true`` adds, for each decoding that is told the language, one that detects it (suffix
``_lid``): the language-unknown case."""

import argparse
import sys
from pathlib import Path

import yaml


def plan(asr_exp: Path, lid: bool):
    from espnet_lalora.methods import Method, method_of

    config = yaml.safe_load((asr_exp / "config.yaml").read_text(encoding="utf-8"))
    method, _ = method_of(config)
    modes = (method or Method()).decode_modes(asr_exp, config)
    if lid:
        modes += [(f"{suffix}_lid", c, m, f"{extra} --detect_language true".strip())
                  for suffix, c, m, extra in modes
                  if "--route" not in extra and "--language_token false" not in extra]
    return modes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--asr_exp", required=True, type=Path)
    parser.add_argument("--lid", default="false", choices=["true", "false"])
    args = parser.parse_args(argv)
    if not (args.asr_exp / "config.yaml").is_file():
        sys.exit(f"error: {args.asr_exp / 'config.yaml'} not found; train first (stage 8)")
    for suffix, config, model, extra in plan(args.asr_exp, args.lid == "true"):
        print(f"@{suffix}\t{config}\t{model}\t{extra}")


if __name__ == "__main__":
    main()
