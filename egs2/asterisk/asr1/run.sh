#!/usr/bin/env bash
# Real recorded speech in five languages: the Asterisk telephone prompts (professional voices, US
# English, Mexican Spanish, Canadian French, Italian, Russian; 8 kHz, about 25 minutes a language;
# Debian's asterisk-core-sounds-* packages, CC-BY-SA 3.0, installed by tools/install.sh). Split by
# prompt text (no text in two splits), transcripts checked by stated rules (local/excluded.tsv
# lists what they drop and why; espnet_lalora/bin/prep_asterisk.py states them). test_shift: the
# test prompts read by a second voice (es-co, fr armelle, it menardi), the speaker shift.
# ./run.sh                       all five languages, every training prompt (about 300 a language)
# ./run.sh --train_per_lang 100  the low-resource size; --langs en,es for fewer languages
set -euo pipefail
cd "$(dirname "$0")"
. ../../../local/data_options.sh
data_option langs en,es,fr,it,ru "languages (en, es, fr, it, ru)"
data_option train_per_lang 0 "a seeded subset of training prompts per language (0: all)"
data_option dev_per_lang 0 "a seeded subset of dev prompts per language (0: all)"
data_option test_per_lang 0 "a seeded subset of test prompts per language (0: all)"
data_option seed 1 "seed of the split and the subsets"
data_option sets train,dev,test,shift=test_shift "data dirs to write (shift: the second voices)"
split_options "$@"
# test_shift: the test prompts read by a second voice (Colombian Spanish, French, Italian)
test_sets=test
if [[ ",$data_opt_langs," =~ ,(es|fr|it), ]]; then
  test_sets="test test_shift"
fi
exec ../../../local/asr.sh \
    --train_set train --valid_set dev --test_sets "$test_sets" \
    --asr_config conf/train_lora.yaml --inference_config conf/decode.yaml \
    --whisper_model base --lang multi \
    "${driver_args[@]}"
