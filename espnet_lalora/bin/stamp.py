"""The driver's completion stamps (see :mod:`espnet_lalora.stamp`):

    python -m espnet_lalora.bin.stamp check STAMP OPTIONS [INPUT...]   exit 0 when complete
    python -m espnet_lalora.bin.stamp mark STAMP OPTIONS [INPUT...]
    python -m espnet_lalora.bin.stamp print OPTIONS [INPUT...]         the fingerprint
    python -m espnet_lalora.bin.stamp whisper-id NAME                  the weights, by content
    python -m espnet_lalora.bin.stamp whisper-languages NAME           99 (v1/v2) or 100 (v3), for a size or a registered path
"""

import sys

from espnet_lalora.stamp import fingerprint, is_done, mark_done, whisper_checkpoint_id


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    action = argv[0] if argv else ""
    if action in ("check", "mark") and len(argv) >= 3:
        stamp, options, inputs = argv[1], argv[2], argv[3:]
        value = fingerprint(inputs, options)
        if action == "check":
            sys.exit(0 if is_done(stamp, value) else 1)
        mark_done(stamp, value, inputs=inputs, options=options)
    elif action == "print" and len(argv) >= 2:
        print(fingerprint(argv[2:], argv[1]))
    elif action == "whisper-id" and len(argv) == 2:
        try:
            print(whisper_checkpoint_id(argv[1]))
        except FileNotFoundError as e:
            sys.exit(f"error: {e}")
    elif action == "whisper-languages" and len(argv) == 2:
        from espnet_lalora.whisper_weights import languages_of

        try:
            print(languages_of(argv[1]))
        except ValueError as e:
            sys.exit(f"error: --whisper_model {argv[1]}: {e}")
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
