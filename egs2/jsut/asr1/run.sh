#!/usr/bin/env bash
# Japanese ASR on JSUT basic5000 (one speaker, 48 kHz studio read speech): a seeded --hours
# training subset (4 h by default), 250 dev and 250 test sentences; scored by CER (Japanese has no
# word spacing: its WER is a sentence error rate). Common Voice Japanese is the commonvoice_lr
# recipe with --langs ja.
# ./run.sh --corpus_dir /data/jsut_ver1.1   (README: corpora)
set -euo pipefail
cd "$(dirname "$0")"
. ../../../local/data_options.sh
data_option hours 4 "training hours (0: all 4,500 training sentences)"
data_option seed 2024 "seed of the training subset"
data_option dev_utts 250 "the sentences before the test ones that form dev"
data_option test_utts 250 "the last sentences (by id), the test set"
split_options "$@"
exec ../../../local/asr.sh \
    --train_set train --valid_set dev --test_sets "test" \
    --asr_config conf/train_lora.yaml --inference_config conf/decode.yaml \
    --whisper_model base --lang multi \
    "${driver_args[@]}"
