#!/usr/bin/env bash
# Your own corpus, no data script to write: --corpus_dir holds one table or Kaldi data dir per set,
# train.tsv|train.csv|train/, dev..., test..., a table's rows being
# path<TAB>transcript[<TAB>speaker<TAB>lang] (README: "Your own corpus").
# ./run.sh --corpus_dir /data/my_corpus --data_lang ja
set -euo pipefail
cd "$(dirname "$0")"
. ../../../local/data_options.sh
data_option data_lang none "language of rows/dirs without a lang column or utt2lang (none: required there)"
split_options "$@"
exec ../../../local/asr.sh \
    --train_set train --valid_set dev --test_sets "test" \
    --asr_config conf/train_lora.yaml --inference_config conf/decode.yaml \
    --whisper_model base --lang multi \
    "${driver_args[@]}"
