#!/usr/bin/env bash
# Stage 1: a Common Voice release -> data/{train,dev,test} (options: python -m
# espnet_lalora.bin.prep_commonvoice --help).
set -euo pipefail
exec "${PYTHON:-python3}" -m espnet_lalora.bin.prep_commonvoice --out data "$@"
