#!/usr/bin/env bash
# Stage 1 of the embedded recipe: synthesize the corpus into data/{train,dev,test} and the
# out-of-domain test sets data/test_{free,room,engine} (local/synth_corpus.py says what each is).
# Options: --train_per_lang N --train_subset N --dev_per_lang N --test_per_lang N --free_per_lang N
#   --room_per_lang N --engine_per_lang N --langs ja,ko,en,es --nj N --seed N
set -euo pipefail
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --corpus_dir) shift 2 ;;   # the corpus is made here, not read
    --train_per_lang|--train_subset|--dev_per_lang|--test_per_lang|--free_per_lang|--room_per_lang|--engine_per_lang|--langs|--nj|--seed) args+=("$1" "$2"); shift 2 ;;
    *) echo "error: local/data.sh: unknown option $1" >&2; exit 1 ;;
  esac
done
"${PYTHON:-python3}" local/synth_corpus.py --out data --audio_dir downloads/synth "${args[@]}"
