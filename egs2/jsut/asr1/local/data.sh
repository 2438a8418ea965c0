#!/usr/bin/env bash
# Stage 1: JSUT basic5000 -> data/{train,dev,test} (options: python -m espnet_lalora.bin.prep_jsut --help).
set -euo pipefail
exec "${PYTHON:-python3}" -m espnet_lalora.bin.prep_jsut --out data "$@"
