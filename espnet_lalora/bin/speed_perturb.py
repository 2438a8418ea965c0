"""Stage 2: speed-perturbed copies of a training data dir (sox ``speed``, pitch and tempo
together, as Kaldi/ESPnet do). Utterance and speaker ids get a ``sp<factor>-`` prefix; the
factor 1.0 keeps the original. Audio is produced in stage 3 from the sox pipes in wav.scp."""

import argparse
import shlex
import sys
from pathlib import Path

from espnet_lalora.datadir import DataDirError, load_data_dir, write_data_dir


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--factors", required=True, help="e.g. '0.9 1.0 1.1'")
    args = parser.parse_args(argv)
    try:
        factors = [float(f) for f in args.factors.split()]
    except ValueError:
        sys.exit(f"error: --speed_perturb_factors '{args.factors}': give numbers, e.g. '0.9 1.0 1.1'")
    if not factors or any(not 0.5 <= f <= 2.0 for f in factors):
        sys.exit(f"error: --speed_perturb_factors '{args.factors}': factors must lie in 0.5-2.0")
    try:
        files = load_data_dir(args.data)
    except DataDirError as e:
        sys.exit(f"error: {e}")
    out = {name: {} for name in files}
    for factor in factors:
        prefix = "" if factor == 1.0 else f"sp{factor:g}-"
        for utt, spec in files["wav.scp"].items():
            if factor == 1.0:
                audio = spec
            elif spec.endswith("|"):
                audio = f"{spec} sox -t wav - -t wav - speed {factor:g} |"
            else:
                audio = f"sox {shlex.quote(spec)} -t wav - speed {factor:g} |"
            out["wav.scp"][prefix + utt] = audio
            for name, mapping in files.items():
                if name == "wav.scp":
                    continue
                value = mapping[utt]
                out[name][prefix + utt] = prefix + value if name == "utt2spk" else value
    write_data_dir(args.out, out)
    print(f"{args.out}: {len(out['wav.scp'])} utterances (factors {args.factors})", file=sys.stderr)


if __name__ == "__main__":
    main()
