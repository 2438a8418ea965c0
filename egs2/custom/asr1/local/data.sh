#!/usr/bin/env bash
# Stage 1: your corpus -> data/{train,dev,test} with the generic importer (python -m
# espnet_lalora.bin.import_corpus --help). Options: --corpus_dir DIR [--data_lang xx]
# [--allow_pipes true|false: accept wav.scp commands 'cmd ... |' of a Kaldi dir, which stage 3 runs
# in a shell; default: $LALORA_ALLOW_PIPES, which the driver sets from its --allow_pipes, else false]
set -euo pipefail
corpus_dir="" lang="" allow_pipes=${LALORA_ALLOW_PIPES:-false}
while [ $# -gt 0 ]; do
  case "$1" in
    --corpus_dir) corpus_dir=$2; shift 2 ;;
    --data_lang) [ "$2" = none ] || lang=$2; shift 2 ;;
    --allow_pipes) allow_pipes=$2; shift 2 ;;
    *) echo "error: local/data.sh: unknown option $1 (options: --corpus_dir, --data_lang, --allow_pipes)" >&2; exit 1 ;;
  esac
done
[ -n "$corpus_dir" ] || { echo "error: --corpus_dir is required: a folder with train.tsv (or train.csv, or a Kaldi dir train/), dev..., test...; see the README, 'Your own corpus'" >&2; exit 1; }
exec "${PYTHON:-python3}" -m espnet_lalora.bin.import_corpus --corpus_dir "$corpus_dir" --lang "$lang" \
  --allow_pipes "$allow_pipes" --out data
