#!/usr/bin/env bash
# Stage 1: Zeroth-Korean -> data/{train,dev,test} (options: python -m
# espnet_lalora.bin.prep_zeroth_korean --help).
set -euo pipefail
exec "${PYTHON:-python3}" -m espnet_lalora.bin.prep_zeroth_korean --out data "$@"
