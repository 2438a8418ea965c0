#!/usr/bin/env bash
# Low-resource multilingual ASR on Mozilla Common Voice: a seeded --hours subset of each
# language's official train split (4 h by default, as in the LA-LoRA paper), the official dev and
# test splits, no training speaker in dev/test. Whisper base + raw LoRA, CER and WER per language.
# ./run.sh --corpus_dir /data/cv-corpus-17.0-2024-03-15 --langs ja,ko,zh-CN   (README: corpora)
set -euo pipefail
cd "$(dirname "$0")"
. ../../../local/data_options.sh
data_option langs ja,ko "comma-separated Common Voice locales (folders of the release)"
data_option hours 4 "training hours per language (0: the whole train.tsv)"
data_option seed 2024 "seed of the training subset"
split_options "$@"
exec ../../../local/asr.sh \
    --train_set train --valid_set dev --test_sets "test" \
    --asr_config conf/train_lora.yaml --inference_config conf/decode.yaml \
    --whisper_model base --lang multi \
    "${driver_args[@]}"
