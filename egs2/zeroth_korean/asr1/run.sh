#!/usr/bin/env bash
# Korean ASR on Zeroth-Korean (OpenSLR 40): a seeded --hours training subset (4 h by default) of
# the training speakers, --dev_speakers of them held out as dev, the official test set (10 other
# speakers); scored by CER (spaces ignored) and WER (space-separated eojeol).
# ./run.sh --corpus_dir /data/zeroth_korean   (README: corpora)
set -euo pipefail
cd "$(dirname "$0")"
. ../../../local/data_options.sh
data_option hours 4 "training hours (0: all 51.6 h)"
data_option seed 2024 "seed of the training subset and of the dev speakers"
data_option dev_speakers 2 "training speakers held out as dev"
split_options "$@"
exec ../../../local/asr.sh \
    --train_set train --valid_set dev --test_sets "test" \
    --asr_config conf/train_lora.yaml --inference_config conf/decode.yaml \
    --whisper_model base --lang multi \
    "${driver_args[@]}"
