#!/usr/bin/env bash
# Stage 1: the Asterisk prompts -> data/{train,dev,test} and data/excluded.tsv
# (options: python -m espnet_lalora.bin.prep_asterisk --help). --corpus_dir: where the packages
# are unpacked (default: installed under /).
set -euo pipefail
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --corpus_dir) [ -z "$2" ] || args+=(--corpus_dir "$2"); shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
exec "${PYTHON:-python3}" -m espnet_lalora.bin.prep_asterisk --out data "${args[@]}"
