"""``stamp check|mark STAMP "INPUTS" "OPTIONS"``: the driver's completion stamps
(see :mod:`espnet_lalora.stamp`). ``check`` exits 0 when the stamp matches, 1 otherwise."""

import sys

from espnet_lalora.stamp import fingerprint, is_done, mark_done


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 4 or argv[0] not in ("check", "mark"):
        sys.exit("usage: python -m espnet_lalora.bin.stamp check|mark STAMP 'INPUTS' 'OPTIONS'")
    action, stamp, inputs, options = argv
    value = fingerprint(inputs.split(), options)
    if action == "check":
        sys.exit(0 if is_done(stamp, value) else 1)
    mark_done(stamp, value, inputs=inputs, options=options)


if __name__ == "__main__":
    main()
