#!/usr/bin/env bash
# Stage 1 of the embedded recipe: synthesize the corpus into data/{train,dev,test} and the
# out-of-domain test sets data/test_{free,room,engine} (local/synth_corpus.py says what each is),
# and take real recorded speech as data/test_real: the English and Spanish Asterisk telephone
# prompts of egs2/asterisk's test split (espnet_lalora.bin.prep_asterisk; the Debian packages
# asterisk-core-sounds-{en,es}(-wav) that tools/install.sh installs), how far fine-tuning on
# synthetic speech carries to real speech.
# Options: --train_per_lang N --train_subset N --dev_per_lang N --test_per_lang N --free_per_lang N
#   --room_per_lang N --engine_per_lang N --langs ja,ko,en,es --nj N --seed N
#   --real_per_lang N (test_real's prompts per language; 0: all of the split) --real_langs en,es
set -euo pipefail
args=() real_per_lang=0 real_langs=en,es
while [ $# -gt 0 ]; do
  case "$1" in
    --corpus_dir) shift 2 ;;   # the corpus is made here, not read
    --train_per_lang|--train_subset|--dev_per_lang|--test_per_lang|--free_per_lang|--room_per_lang|--engine_per_lang|--langs|--nj|--seed) args+=("$1" "$2"); shift 2 ;;
    --real_per_lang) real_per_lang=$2; shift 2 ;;
    --real_langs) real_langs=$2; shift 2 ;;
    *) echo "error: local/data.sh: unknown option $1" >&2; exit 1 ;;
  esac
done
"${PYTHON:-python3}" local/synth_corpus.py --out data --audio_dir downloads/synth "${args[@]}"
"${PYTHON:-python3}" -m espnet_lalora.bin.prep_asterisk --langs "$real_langs" --sets test=test_real --test_per_lang "$real_per_lang" --out data/real
rm -rf data/test_real && mv data/real/test_real data/test_real && mv data/real/excluded.tsv data/test_real/
rm -rf data/real
