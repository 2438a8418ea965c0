#!/usr/bin/env bash
# The embedded default recipe: a small multilingual corpus (Japanese, Korean, English, Spanish)
# synthesized on this machine with espeak-ng, Whisper base fine-tuned with raw LoRA, compared with
# zero-shot Whisper base on the in-grammar test set and three out-of-domain ones (other sentences;
# unseen voices in a noisy room; another synthesizer), and on real recorded speech: English and
# Spanish telephone prompts (test_real, from Debian's Asterisk packages). Runs anywhere, nothing to
# download but packages.
set -euo pipefail
cd "$(dirname "$0")"
exec ../../../local/asr.sh \
    --train_set train --valid_set dev --test_sets "test test_free test_room test_engine test_real" \
    --asr_config conf/train_lora.yaml --inference_config conf/decode.yaml \
    --whisper_model base --lang multi \
    "$@"
