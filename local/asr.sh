#!/usr/bin/env bash
# The shared recipe driver of espnet-lalora: stages 1-12, from data preparation to RESULTS.md.
# A recipe's run.sh passes its defaults as options and then the user's ("$@"), last one wins.
# Each stage logs "Stage N: ..." with its time, writes a log under exp/, can run alone, and skips
# work whose outputs are complete (a stamp holds the fingerprint of its inputs and options).
set -euo pipefail

lalora_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
log() { echo "$(date '+%Y-%m-%d %H:%M:%S') [$(basename "$PWD")] $*" >&2; }
die() { echo "error: $*" >&2; exit 1; }

# ---- options: name, default, help. `./run.sh --help` prints them with the recipe's defaults.
declare -a option_names=()
declare -A option_help=()
option() { option_names+=("$1"); printf -v "$1" '%s' "$2"; option_help[$1]=$3; }
option stage 1 "first stage to run (1-12)"
option stop_stage 12 "last stage to run (1-12)"
option nj 2 "parallel jobs for data formatting and decoding"
option ngpu 0 "GPUs per node for training and decoding (0: CPU); >1 trains with DDP, one process per GPU (NCCL)"
option nproc "" "training processes per node (stages 7-8); default: --ngpu when >= 1, else 1; on CPU (--ngpu 0) N > 1 runs N DDP processes with gloo"
option num_nodes 1 "nodes of the training (stages 7-8); every node runs this driver with its --node_rank"
option node_rank 0 "this node's rank, 0 to num_nodes-1; node 0 runs the stages, nodes > 0 only join stages 7-8"
option master_addr "" "host name or address of node rank 0, reachable from every node (required with --num_nodes > 1)"
option master_port 29500 "TCP port on node rank 0 for the rendezvous (--num_nodes > 1)"
option python "" "Python with espnet-lalora installed (default: the project's .venv)"
option train_set train "training data dir name under data/"
option valid_set dev "validation data dir name under data/"
option test_sets test "space-separated test sets: names under data/ or paths to any Kaldi data dir"
option asr_config conf/train_lora.yaml "ESPnet training config (method, rank, optimizer, epochs)"
option method "" "shortcut for --asr_config conf/train_<method>.yaml (the method names: see conf/)"
option inference_config conf/decode.yaml "decoding config (beam_size, maxlenratio, batch_size)"
option inference_asr_model valid.acc.ave.pth "checkpoint of the training run that stage 9 merges"
option asr_tag "" "experiment name suffix (default: the config's file name, and _seed<N> with --seed)"
option seed "" "random seed of training: ESPnet's trainer (initialization, data order) and the method's stage 7; empty: the config's (conf/finetune.yaml: 2024)"
option whisper_model base "Whisper size for encoder and decoder (overrides the config), or a path: an openai-whisper .pt, a Hugging Face (config.json + model.safetensors) or CTranslate2 (model.bin) folder"
option lang multi "language of data without utt2lang (ISO 639-1, e.g. ja); multi: read utt2lang"
option speed_perturb_factors "" "e.g. '0.9 1.0 1.1'; empty: no speed perturbation"
option corpus_dir "" "corpus location, for recipes that read a corpus (their local/data.sh checks it)"
option local_data_opts "" "extra options for the recipe's local/data.sh"
option min_wav_duration 0.3 "stage 4 drops shorter training utterances (seconds)"
option max_wav_duration 30 "stage 4 drops longer training utterances (seconds; Whisper: 30)"
option zero_shot true "also decode and score the untrained Whisper (true/false)"
option allow_pipes false "run wav.scp entries that are shell commands ('cmd ... |', Kaldi pipes) at stages 1 and 3; only for data you trust (true/false)"
option train_args "" "extra options for ESPnet's asr_train, e.g. '--max_epoch 2'"
option inference_args "" "extra options for the decoder (python -m espnet_lalora.bin.whisper_inference --help)"
option zero_shot_inference_args "" "extra decoding options of the zero-shot model (by default it is decoded as the fine-tuned ones: --inference_config)"
option lid_decoding false "also decode every model with the language detected by Whisper instead of given (the language-unknown case; decode dirs *_lid) (true/false)"
option prepared "" "methods with a stage 7 (la_lora): use this output of it (e.g. a la_selection.json made elsewhere) instead of running it"
option prepare_nproc "" "processes per node for stage 7 (gloo on CPU); default: --nproc"
option prepare_args "" "extra options of the method's stage 7, e.g. la_lora: '--steps 16'"
# Earlier names of the stage-7 options.
declare -A option_alias=([la_selection]=prepared [la_nproc]=prepare_nproc [la_args]=prepare_args)

usage() {
  echo "Usage: ./run.sh [options]   (stages 1-12: data, speed perturbation, format, filter, token list,"
  echo "  statistics, LA selection, training, merge/export, decoding, scoring, report)"
  echo "Options (default in brackets):"
  local name
  for name in "${option_names[@]}"; do
    printf '  --%-22s %s [%s]\n' "$name" "${option_help[$name]}" "${!name}"
  done
}

show_help=false
while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h) show_help=true; shift; continue ;;
    --*=*) key=${1%%=*}; value=${1#*=}; shift ;;
    --*) key=$1; [ $# -ge 2 ] || die "option $1 needs a value (see --help)"; value=$2; shift 2 ;;
    *) die "unexpected argument '$1'; options look like --name value (see --help)" ;;
  esac
  key=${key#--}; key=${key//-/_}; key=${option_alias[$key]:-$key}
  [ -n "${option_help[$key]+set}" ] || die "unknown option --$key (see $0 --help)"
  printf -v "$key" '%s' "$value"
done
if $show_help; then usage; exit 0; fi

# ---- checks before anything runs: bad options cost nothing and touch nothing.
for name in stage stop_stage nj ngpu node_rank; do
  [[ ${!name} =~ ^[0-9]+$ ]] || die "--$name must be a non-negative integer, got '${!name}'"
done
[ "$stage" -ge 1 ] && [ "$stop_stage" -le 12 ] || die "stages run from 1 to 12 (got --stage $stage --stop_stage $stop_stage)"
[ "$stage" -le "$stop_stage" ] || die "--stage $stage is after --stop_stage $stop_stage; nothing would run"
[ "$nj" -ge 1 ] || die "--nj must be at least 1"
[ -z "$prepare_nproc" ] || [[ $prepare_nproc =~ ^[1-9][0-9]*$ ]] || die "--prepare_nproc must be a positive integer, got '$prepare_nproc'"
# Training processes: one per GPU (ESPnet's DDP with one device per process), or N on CPU.
[ -z "$nproc" ] || [[ $nproc =~ ^[1-9][0-9]*$ ]] || die "--nproc must be a positive integer, got '$nproc'"
[ "$ngpu" -eq 0 ] || [ -z "$nproc" ] || [ "$nproc" -eq "$ngpu" ] \
  || die "--nproc $nproc with --ngpu $ngpu: training runs one process per GPU; leave --nproc out (or give --nproc $ngpu)"
[ -n "$nproc" ] || nproc=$(( ngpu >= 1 ? ngpu : 1 ))
[ -n "$prepare_nproc" ] || prepare_nproc=$nproc
[[ $num_nodes =~ ^[1-9][0-9]*$ ]] || die "--num_nodes must be a positive integer, got '$num_nodes'"
[ "$node_rank" -lt "$num_nodes" ] || die "--node_rank $node_rank must be below --num_nodes $num_nodes (node ranks run from 0)"
[ "$num_nodes" -eq 1 ] || [ -n "$master_addr" ] \
  || die "--master_addr is required with --num_nodes $num_nodes: the host of node rank 0, reachable from every node"
[[ $master_port =~ ^[0-9]+$ ]] && [ "$master_port" -ge 1 ] && [ "$master_port" -le 65535 ] \
  || die "--master_port must be a TCP port (1-65535), got '$master_port'"
# A node of rank > 0 only runs its share of the training processes (stages 7-8); node 0 runs
# everything else and writes the outputs.
worker_node=false
if [ "$node_rank" -gt 0 ]; then
  worker_node=true
  [ "$stage" -ge 7 ] && [ "$stop_stage" -le 8 ] \
    || die "--node_rank $node_rank: nodes other than 0 run stages 7-8 only (give --stage 8 --stop_stage 8, or 7-8); node 0 runs the others"
fi
case "$zero_shot" in true|false) ;; *) die "--zero_shot must be true or false, got '$zero_shot'" ;; esac
case "$allow_pipes" in true|false) ;; *) die "--allow_pipes must be true or false, got '$allow_pipes'" ;; esac
case "$lid_decoding" in true|false) ;; *) die "--lid_decoding must be true or false, got '$lid_decoding'" ;; esac
runs() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }
if [ -n "$method" ]; then
  asr_config=conf/train_${method}.yaml
  [ -f "$asr_config" ] || die "--method $method: no $asr_config; known: $(cd conf && ls train_*.yaml | sed 's/^train_//; s/\.yaml$//' | tr '\n' ' ')"
fi
uses_model() { runs 6 || runs 7 || runs 8 || runs 9 || runs 10; }
if uses_model; then
  [ -f "$asr_config" ] || die "--asr_config $asr_config: file not found (configs are in conf/, e.g. conf/train_lora.yaml)"
fi
if runs 10; then
  [ -f "$inference_config" ] || die "--inference_config $inference_config: file not found"
fi
if [ -z "$python" ]; then
  python=${LALORA_PYTHON:-$lalora_root/.venv/bin/python}
fi
[ -x "$python" ] || command -v "$python" >/dev/null || die "no Python at $python; run: bash $lalora_root/tools/install.sh"
# Every Python the driver starts: the run's lock (fd 9) is not passed on, so a stray child can
# never keep the recipe folder locked.
py() { "$python" "$@" 9>&-; }
export PYTHONWARNINGS=${PYTHONWARNINGS:-ignore::FutureWarning}

# Names become folders under data/, dump/ and exp/: letters, digits and . _ + - only.
check_name() {
  [[ $2 =~ ^[A-Za-z0-9][A-Za-z0-9._+-]*$ && $2 != *..* ]] \
    || die "--$1 '$2': must be a plain name (letters, digits, '.', '_', '+', '-'; no '/', no '..', not empty): it names folders under data/, dump/ and exp/"
}
[ -z "$seed" ] || [[ $seed =~ ^[0-9]+$ ]] || die "--seed must be a non-negative integer, got '$seed'"
[ -n "$asr_tag" ] || asr_tag=$(basename "$asr_config" .yaml)${seed:+_seed$seed}
check_name asr_tag "$asr_tag"
check_name train_set "$train_set"
check_name valid_set "$valid_set"
# weights given as a path (a .pt, a Hugging Face or CTranslate2 folder): converted once, then
# used under the plain name this prints
if [[ $whisper_model == */* || -e $whisper_model ]]; then
  whisper_model=$(py -m espnet_lalora.bin.whisper_source "$whisper_model") || exit 1
fi
check_name whisper_model "$whisper_model"
[ -n "${test_sets// /}" ] || die "--test_sets is empty: give at least one test set"
for t in $test_sets; do check_name "test_sets (the folder name of $t)" "$(basename "$t")"; done

# split_args NAME: the words of option --NAME as a shell would split them (quotes and
# backslashes honoured: --train_args "--init_param '/my models/x.pth'"), into the array
# NAME_words; nothing is executed or expanded.
split_args() {
  local words
  words=$(mktemp)
  "$python" -c 'import shlex, sys
try:
    sys.stdout.write("".join(w + "\0" for w in shlex.split(sys.argv[1])))
except ValueError as e:
    sys.exit(f"{e}")' "${!1}" > "$words" 9>&- \
    || { rm -f "$words"; die "--$1 '${!1}': cannot be split into words (unbalanced quotes?)"; }
  mapfile -d '' -t "${1}_words" < "$words"
  rm -f "$words"
}
for name in train_args prepare_args local_data_opts; do split_args "$name"; done
# after --train_args, so that --seed wins; stage 7 reads the same options
[ -z "$seed" ] || train_args_words+=(--seed "$seed")
if [ "$lang" != multi ]; then
  py -c 'import sys; from espnet_lalora.whisper_langs import check_language as c; c(sys.argv[1], "--lang")' \
    "$lang" 2>/dev/null || die "--lang $lang: not a Whisper language code (e.g. ja, ko, en), nor multi (read utt2lang)"
fi

# One run at a time in a recipe folder: a second one would write the same files. (A node of
# rank > 0 shares node 0's folder on a cluster's file system and writes only its rank logs.)
mkdir -p exp
if $worker_node; then exec 9>/dev/null; else exec 9> exp/.lock; fi
$worker_node || flock -n 9 || die "another run is using this recipe folder ($(cat exp/.lock.owner 2>/dev/null || echo 'pid unknown')); wait for it to end, or run in a copy of the recipe"
echo "pid $$ on $(hostname), started $(date '+%Y-%m-%d %H:%M:%S')" > exp/.lock.owner

asr_exp=exp/asr_${asr_tag}
# The config is checked once, composed (its base_config resolved) into the one file that ESPnet
# reads, and asked for its method; the registry says whether the method has a stage 7.
train_config=$asr_exp/asr_config.yaml
stamp_config=$train_config  # what the stamps fingerprint: node 0's composed config
# a node of rank > 0 composes its own copy (node 0 may be reading its file)
! $worker_node || train_config=$asr_exp/asr_config.node$node_rank.yaml
train_method=unknown prepare_output=- prepare_key=- whisper_id=$whisper_model method_inputs=()
if uses_model; then
  info=$(py -m espnet_lalora.bin.check_config --asr_config "$asr_config" --compose_to "$train_config" \
    --print_info) || exit 1
  read -r train_method prepare_output prepare_key method_more <<< "$info"
  # what else training reads (a distilled student: its teacher), in stage 8's fingerprint
  [ -z "$method_more" ] || IFS=$'\t' read -r -a method_inputs <<< "$method_more"
  # the weights by content: stages 6-10 are redone when they change under the same name
  whisper_id=$(py -m espnet_lalora.bin.stamp whisper-id "$whisper_model") || exit 1
fi
zero_shot_exp=exp/asr_zero_shot_whisper_${whisper_model}
stats_dir=exp/asr_stats_raw_whisper_multilingual
# Whisper v3 has 100 languages (a 51,866-token list), v1/v2 99: every tokenizer of every stage
# (ESPnet's too) takes the count from this variable, and a model that disagrees is refused.
whisper_languages=$(py -m espnet_lalora.bin.stamp whisper-languages "$whisper_model") || exit 1
export ESPNET_LALORA_WHISPER_LANGUAGES=$whisper_languages
token_list=data/token_list/whisper_multilingual/tokens.txt
[ "$whisper_languages" = 99 ] || token_list=data/token_list/whisper_multilingual_$whisper_languages/tokens.txt
[ -z "$speed_perturb_factors" ] || train_sp=${train_set}_sp
train_dump=${train_sp:-$train_set}
inference_tag=$(basename "$inference_config" .yaml)

# A test set is a name under data/ or a path to any data dir; its dump name is its base name.
data_path() { case "$1" in */*) echo "$1" ;; *) echo "data/$1" ;; esac; }
dump_name() { basename "$1"; }
test_names=""
for t in $test_sets; do test_names+=" $(dump_name "$t")"; done

# once STAMP "OPTIONS" "SKIP MESSAGE" INPUT... -- COMMAND...: skip COMMAND when STAMP holds the
# fingerprint of OPTIONS and the INPUTs (files, folders, listed:WAV_SCP); otherwise remove the
# stamp first (a killed run never leaves an old stamp over half-rewritten outputs), run COMMAND,
# and stamp on success.
once() {
  local stamp_file=$1 opts=$2 skip_message=$3 inputs=()
  shift 3
  while [ "$1" != -- ]; do inputs+=("$1"); shift; done
  shift
  if py -m espnet_lalora.bin.stamp check "$stamp_file" "$opts" "${inputs[@]}"; then
    log "$skip_message; skipping"; return 0
  fi
  if $worker_node; then "$@"; return; fi  # node 0 keeps the stamps
  rm -f "$stamp_file"
  "$@" || return 1
  py -m espnet_lalora.bin.stamp mark "$stamp_file" "$opts" "${inputs[@]}"
}
stage_start() { stage_t0=$(date +%s); log "Stage $1: $2"; }
stage_end() { log "Stage $1 done in $(( $(date +%s) - stage_t0 )) s"; }
mkdir -p exp/logs

if runs 1; then
  stage_start 1 "data preparation (local/data.sh)"
  prepare_data() {
    LALORA_ALLOW_PIPES=$allow_pipes PYTHON=$python bash local/data.sh --corpus_dir "$corpus_dir" \
      "${local_data_opts_words[@]}" 9>&- \
      2>&1 | tee exp/logs/stage1_data.log
  }
  # local/: the recipe's data script and what it reads (the synthesis script, sentence lists)
  once data/.stage1.done "$corpus_dir ${local_data_opts_words[*]} $allow_pipes" "data dirs already prepared (data/.stage1.done)" \
    local -- prepare_data || die "data preparation failed; see exp/logs/stage1_data.log"
  stage_end 1
fi

if runs 2; then
  stage_start 2 "speed perturbation (factors: ${speed_perturb_factors:-none})"
  if [ -z "$speed_perturb_factors" ]; then
    log "no --speed_perturb_factors: nothing to do"
  else
    perturb() { py -m espnet_lalora.bin.speed_perturb --data "data/$train_set" --out "data/$train_sp" \
      --factors "$speed_perturb_factors" 2>&1 | tee exp/logs/stage2_speed_perturb.log; }
    once "data/$train_sp/.done" "$speed_perturb_factors" "data/$train_sp is complete" \
      "data/$train_set" "listed:data/$train_set/wav.scp" -- perturb \
      || die "speed perturbation failed; see exp/logs/stage2_speed_perturb.log"
  fi
  stage_end 2
fi

# format_set SRC DST: a data dir as 16 kHz mono WAV with its text (stage 3; stage 10 for a test
# set first given after stage 3 ran).
format() { py -m espnet_lalora.bin.format_data --data "$1" --out "$2" --nj "$nj" --allow_pipes "$allow_pipes" \
    2>&1 | tee "exp/logs/stage3_format_$(basename "$2").log"; }
format_set() {
  once "$2/.done" "16k $allow_pipes" "$2 is complete" "$1" "listed:$1/wav.scp" -- format "$1" "$2" \
    || die "formatting $1 failed; see exp/logs/stage3_format_$(basename "$2").log"
}

if runs 3; then
  stage_start 3 "format audio as 16 kHz mono WAV into dump/raw"
  format_set "data/$train_dump" "dump/raw/org/$train_dump"
  format_set "data/$valid_set" "dump/raw/org/$valid_set"
  for t in $test_sets; do
    # the validation or training set as a test set: decoded from its dump (stage 4 filters it
    # there); formatting it again would rewrite what stages 6-8 read, and retrain every run
    if [ "$(dump_name "$t")" = "$valid_set" ] || [ "$(dump_name "$t")" = "$train_dump" ]; then
      [ "$(data_path "$t")" = "data/$(dump_name "$t")" ] \
        || die "--test_sets $t: its name $(dump_name "$t") is the training or validation set's; rename the folder"
      log "test set $t is the $([ "$t" = "$valid_set" ] && echo validation || echo training) set: decoded from dump/raw/$t as stage 4 leaves it"
      continue
    fi
    format_set "$(data_path "$t")" "dump/raw/$(dump_name "$t")"
  done
  stage_end 3
fi

if runs 4; then
  stage_start 4 "filter training and validation data (${min_wav_duration}-${max_wav_duration} s, empty text)"
  filter() { py -m espnet_lalora.bin.filter_data --data "dump/raw/org/$1" --out "dump/raw/$1" \
      --min_sec "$min_wav_duration" --max_sec "$max_wav_duration" --lang "$lang" \
      2>&1 | tee "exp/logs/stage4_filter_$1.log"; }
  for set in "$train_dump" "$valid_set"; do
    once "dump/raw/$set/.done" "$min_wav_duration $max_wav_duration $lang" "dump/raw/$set is complete" \
      "dump/raw/org/$set" -- filter "$set" || die "filtering $set failed; see exp/logs/stage4_filter_$set.log"
  done
  stage_end 4
fi

if runs 5; then
  stage_start 5 "Whisper token list"
  make_token_list() {
    mkdir -p "$(dirname "$token_list")" \
      && py -m espnet_lalora.bin.whisper_token_list --languages "$whisper_languages" \
        --output "$token_list.tmp" > exp/logs/stage5_token_list.log 2>&1 \
      && mv "$token_list.tmp" "$token_list"
  }
  once "$token_list.done" "$(basename "$(dirname "$token_list")")" "$token_list exists" -- make_token_list \
    || die "the token list failed; see exp/logs/stage5_token_list.log"
  stage_end 5
fi

# ESPnet's asr_train options shared by stages 6-8: data, token type, the plugin's task. (All
# paths here are plain names under the recipe folder, checked above: safe to split on spaces.)
espnet_data_args() {
  echo --use_preprocessor true --token_type whisper_multilingual --bpemodel whisper_multilingual \
    --token_list "$token_list" --non_linguistic_symbols none --cleaner none --g2p none \
    --train_data_path_and_name_and_type "dump/raw/$train_dump/wav.scp,speech,sound" \
    --train_data_path_and_name_and_type "dump/raw/$train_dump/text_whisper,text,text" \
    --valid_data_path_and_name_and_type "dump/raw/$valid_set/wav.scp,speech,sound" \
    --valid_data_path_and_name_and_type "dump/raw/$valid_set/text_whisper,text,text" \
    --encoder_conf whisper_model="$whisper_model" --decoder_conf whisper_model="$whisper_model"
}

# The shape files of stage 6, for the training batches of stages 7 and 8.
espnet_shape_args() {
  echo --train_shape_file "$stats_dir/train/speech_shape" --train_shape_file "$stats_dir/train/text_shape" \
    --valid_shape_file "$stats_dir/valid/speech_shape" --valid_shape_file "$stats_dir/valid/text_shape"
}

# launch NPROC LOG PYTHON_ARGS...: python on NPROC processes per node times --num_nodes, the one
# home of the launch logic (stages 7 and 8). One process in all: plain python. More: torchrun
# through espnet_lalora.bin.launch (rank R > 0 logs to LOG's .rankR file; a dead process stops
# them all, reported by rank), each process with ESPnet's DDP options (ddp_args).
world_size() { echo $(( $1 * num_nodes )); }
launch() {
  local n=$1 log=$2
  shift 2
  if [ "$(world_size "$n")" -le 1 ]; then py "$@"; return; fi
  py -m espnet_lalora.bin.launch --nproc "$n" --num_nodes "$num_nodes" --node_rank "$node_rank" \
    --master_addr "$master_addr" --master_port "$master_port" --log "$log" -- "$@"
}
# ddp_args NPROC: ESPnet's device options of one process. Under the launcher: one GPU each and
# NCCL, or the CPU and gloo; ESPnet reads RANK, WORLD_SIZE and the master from torchrun's
# environment (--multiprocessing_distributed false: it does not spawn processes itself).
ddp_args() {
  if [ "$(world_size "$1")" -le 1 ]; then echo --ngpu "$ngpu"; return; fi
  if [ "$ngpu" -gt 0 ]; then
    echo --ngpu 1 --multiprocessing_distributed false --dist_backend nccl
  else
    echo --ngpu 0 --multiprocessing_distributed false --dist_backend gloo
  fi
}
# the launcher's report of a failed process (rank, cause, log), from LOG after START_LINE
launch_errors() { tail -n +"$(($2 + 1))" "$1" 2>/dev/null | grep '^error: ' >&2 || true; }

if runs 6; then
  stage_start 6 "shape statistics (ESPnet collect_stats)"
  # shellcheck disable=SC2046
  collect_stats() {
    rm -rf "$stats_dir"
    py -m espnet_lalora.bin.asr_train --collect_stats true --config "$train_config" \
      --use_adapter false --ngpu 0 --num_workers 0 --output_dir "$stats_dir" \
      --train_shape_file "dump/raw/$train_dump/wav.scp" --valid_shape_file "dump/raw/$valid_set/wav.scp" \
      $(espnet_data_args) > exp/logs/stage6_stats.log 2>&1
  }
  once "$stats_dir/.done" "$whisper_id" "$stats_dir is complete" \
    "dump/raw/$train_dump" "dump/raw/$valid_set" -- collect_stats \
    || die "collect_stats failed; see exp/logs/stage6_stats.log"
  stage_end 6
fi

# A method with a stage 7 (the registry says which: check_config above) trains on its output:
# stage 7's, or --prepared FILE made elsewhere.
if [ -n "$prepared" ]; then
  [ -f "$prepared" ] || die "--prepared $prepared: file not found"
  [ "$prepare_output" != - ] || die "--prepared is for methods with a stage 7; $asr_config uses $train_method, which has none"
  prepared=$(cd "$(dirname "$prepared")" && pwd)/$(basename "$prepared")
fi
prepared_file=${prepared:-$asr_exp/$prepare_output}
# stage 7's pass runs in stage 8's process when both run here on one process (fold_prepare)
fold_prepare=false
prepare_inputs=("$stamp_config" "dump/raw/$train_dump" "$stats_dir/.done")

if runs 7; then
  stage_start 7 "the method's preparation pass (method: $train_method)"
  if [ "$prepare_output" = - ]; then
    log "method $train_method has a fixed placement: nothing to prepare"
  elif [ -n "$prepared" ]; then
    log "using $prepared (--prepared): no pass"
    # shellcheck disable=SC2046
    py -m espnet_lalora.bin.prepare_method --check "$prepared" --config "$train_config" \
      $(espnet_data_args) $(espnet_shape_args) "${train_args_words[@]}" \
      || die "--prepared $prepared does not fit this model (see above)"
  else
    prepare_world=$(world_size "$prepare_nproc")
    prepare_opts="$whisper_id ${train_args_words[*]} ${prepare_args_words[*]} $prepare_world"
    prepare_log=exp/logs/stage7_prepare_$asr_tag.log
    $worker_node && prepare_log=exp/logs/stage7_prepare_$asr_tag.node$node_rank.log
    # shellcheck disable=SC2046
    prepare() {
      mkdir -p "$asr_exp" \
        && launch "$prepare_nproc" "$prepare_log" -m espnet_lalora.bin.prepare_method \
          --out "$asr_exp/$prepare_output" --config "$train_config" $(ddp_args "$prepare_nproc") \
          $(espnet_data_args) $(espnet_shape_args) \
          "${train_args_words[@]}" "${prepare_args_words[@]}" 2>&1 | tee "$prepare_log"
    }
    if runs 8 && [ "$prepare_world" -le 1 ] && [ "$(world_size "$nproc")" -le 1 ] \
        && ! py -m espnet_lalora.bin.stamp check "$asr_exp/.prepare.done" "$prepare_opts" "${prepare_inputs[@]}"; then
      # One process for the pass and the training: the imports, the model and the batches'
      # start-up are paid once (a separate stage 7 spent more on start-up than on the pass).
      fold_prepare=true
      rm -f "$asr_exp/.prepare.done"
      log "the pass runs at the start of stage 8, in its process; it writes $asr_exp/$prepare_output (log: $asr_exp/train.log)"
    else
      once "$asr_exp/.prepare.done" "$prepare_opts" "$asr_exp/$prepare_output is complete" \
        "${prepare_inputs[@]}" -- prepare || die "stage 7 failed; see $prepare_log"
    fi
  fi
  stage_end 7
fi

# Stage 8 resumes only an interrupted run of the same inputs. When the inputs changed (data,
# config, --train_args, weights), the earlier training outputs are moved aside and it trains
# from scratch: ESPnet would otherwise resume the old finished run and train nothing.
move_aside_training() {
  local aside f
  aside=exp/superseded/$(basename "$asr_exp")_$(date +%Y%m%d-%H%M%S)
  log "the inputs of $asr_exp changed since it was trained: its training outputs go to $aside; training from scratch"
  mkdir -p "$aside"
  for f in "$asr_exp"/* "$asr_exp"/.[!.]*; do
    [ -e "$f" ] || continue
    case "$(basename "$f")" in
      asr_config.yaml|"$prepare_output"|"${prepare_output%.*}.png"|.prepare.done|.train.started) ;;
      asr_config.node*.yaml|train.node*.log) ;;  # nodes > 0 of this run may be writing them
      *) mv "$f" "$aside/" ;;
    esac
  done
}

if runs 8; then
  stage_start 8 "training ($train_method, ESPnet trainer) into $asr_exp"
  train_inputs=("$stamp_config" "dump/raw/$train_dump" "dump/raw/$valid_set" "$stats_dir/.done"
                "${method_inputs[@]}")
  prepared_args=()
  if $fold_prepare; then
    train_inputs+=("$prepared_file")
    prepared_args=(--prepare_out "$prepared_file" --prepare_args "$prepare_args")
  elif [ "$prepare_output" != - ]; then
    [ -f "$prepared_file" ] || die "$prepared_file is missing: run stage 7 first (or give --prepared FILE)"
    train_inputs+=("$prepared_file")
    case "$prepared_file" in /*) ;; *) prepared_file=$PWD/$prepared_file ;; esac
    prepared_args=(--adapter_conf "$prepare_key=$prepared_file")
  fi
  train_opts="$whisper_id ${train_args_words[*]}"
  # shellcheck disable=SC2046
  train_log=$asr_exp/train.log
  $worker_node && train_log=$asr_exp/train.node$node_rank.log
  train() {
    local fingerprint log_lines
    if $worker_node; then  # its processes join node 0's; node 0 moves, stamps and resumes
      log "node $node_rank of $num_nodes: $nproc training process(es); log: $train_log"
      log_lines=$(cat "$train_log" 2>/dev/null | wc -l)
      # shellcheck disable=SC2046
      launch "$nproc" "$asr_exp/train.log" -m espnet_lalora.bin.asr_train --config "$train_config" \
        --output_dir "$asr_exp" $(ddp_args "$nproc") --resume true $(espnet_shape_args) \
        $(espnet_data_args) "${prepared_args[@]}" "${train_args_words[@]}" >> "$train_log" 2>&1 \
        || { launch_errors "$train_log" "$log_lines"; return 1; }
      return 0
    fi
    fingerprint=$(py -m espnet_lalora.bin.stamp print "$train_opts" "${train_inputs[@]}") || return 1
    mkdir -p "$asr_exp"
    if [ -f "$asr_exp/checkpoint.pth" ] || [ -f "$asr_exp/train.log" ]; then
      if [ "$(cat "$asr_exp/.train.started" 2>/dev/null)" = "$fingerprint" ]; then
        log "resuming the interrupted run (same inputs) from $asr_exp/checkpoint.pth"
      else
        move_aside_training
      fi
    fi
    echo "$fingerprint" > "$asr_exp/.train.started"
    log "log: $asr_exp/train.log$([ "$(world_size "$nproc")" -le 1 ] || echo " (ranks > 0: train.rank<R>.log)")"
    log_lines=$(cat "$asr_exp/train.log" 2>/dev/null | wc -l)  # train.log grows across resumes
    launch "$nproc" "$asr_exp/train.log" -m espnet_lalora.bin.asr_train --config "$train_config" \
      --output_dir "$asr_exp" $(ddp_args "$nproc") --resume true $(espnet_shape_args) \
      $(espnet_data_args) "${prepared_args[@]}" "${train_args_words[@]}" >> "$asr_exp/train.log" 2>&1 \
      || { launch_errors "$asr_exp/train.log" "$log_lines"; return 1; }
    grep -m1 "trainable parameters" "$asr_exp/train.log" | sed 's/^.*\[espnet_lalora\]/  /' >&2 || true
    log "trained to epoch $(grep -o '[0-9]*epoch results:' "$asr_exp/train.log" | tail -1 | grep -o '^[0-9]*'), $(tail -n +"$((log_lines + 1))" "$asr_exp/train.log" | grep -c 'epoch results:' || true) epoch(s) in this run"
  }
  once "$asr_exp/.train.done" "$train_opts" "$asr_exp is trained" "${train_inputs[@]}" -- train \
    || die "training failed; see $train_log (re-run stage 8 to resume)"
  if $fold_prepare && ! $worker_node; then
    grep "stage 7:" "$asr_exp/train.log" | tail -1 >&2 || true
    py -m espnet_lalora.bin.stamp mark "$asr_exp/.prepare.done" "$prepare_opts" "${prepare_inputs[@]}"
  fi
  stage_end 8
fi

if runs 9; then
  stage_start 9 "merge adapters into Whisper and export ($asr_exp/export)"
  export_model() { py -m espnet_lalora.bin.export_model --asr_exp "$asr_exp" --checkpoint "$inference_asr_model" \
      2>&1 | tee exp/logs/stage9_export_"$asr_tag".log; }
  once "$asr_exp/export/.done" "$whisper_id" "$asr_exp/export is complete" \
    "$asr_exp/$inference_asr_model" "$asr_exp/config.yaml" -- export_model \
    || die "export failed; see exp/logs/stage9_export_$asr_tag.log"
  stage_end 9
fi

# decode_plan EXP: what stage 10 decodes of EXP, one line each: @suffix<TAB>config<TAB>model<TAB>
# options (decode dir EXP/decode_<inference_tag><suffix>). The method says which (language
# experts: fusions and routed experts); --lid_decoding true adds the language-detected variants.
decode_plan() {
  if [ "$1" = "$zero_shot_exp" ]; then
    printf '@\t%s\tnone\t%s\n' "$zero_shot_exp/config.yaml" "$zero_shot_inference_args"
    [ "$lid_decoding" = false ] \
      || printf '@_lid\t%s\tnone\t%s\n' "$zero_shot_exp/config.yaml" "$zero_shot_inference_args --detect_language true"
  else
    py -m espnet_lalora.bin.decode_plan --asr_exp "$1" --lid "$lid_decoding"
  fi
}
decoded_exps() { echo "$asr_exp"; [ "$zero_shot" = false ] || echo "$zero_shot_exp"; }

# decode_model EXP SUFFIX CONFIG MODEL_FILE EXTRA_ARGS: every test set, per language (Whisper's
# language token), nj jobs each, merged into EXP/decode_<inference_tag><SUFFIX>/<test>/.
decode_model() {
  # The test sets whose decoding is not complete (each has its own stamp) are decoded together:
  # one decoder start per job for all of them.
  local exp=$1 suffix=$2 config=$3 model_file=$4 extra=$5 t dir inputs pending=() sets=()
  for t in $test_names; do
    dir=$exp/decode_${inference_tag}${suffix}/$t
    inputs=("dump/raw/$t" "$config" "$inference_config")
    [ "$model_file" = none ] || inputs+=("$model_file")
    if py -m espnet_lalora.bin.stamp check "$dir/.done" "$whisper_id $extra $lang" "${inputs[@]}"; then
      log "$dir is complete; skipping"
    else
      rm -f "$dir/.done"
      pending+=("$t")
      sets+=(--data "dump/raw/$t" --out "$dir")
    fi
  done
  [ ${#pending[@]} -gt 0 ] || return 0
  py -m espnet_lalora.bin.decode_set "${sets[@]}" --asr_train_config "$config" \
    --asr_model_file "$model_file" --inference_config "$inference_config" \
    --nj "$nj" --ngpu "$ngpu" --lang "$lang" --inference_args "$extra" \
    || die "decoding failed; see $exp/decode_${inference_tag}${suffix}/logdir/"
  for t in "${pending[@]}"; do
    dir=$exp/decode_${inference_tag}${suffix}/$t
    inputs=("dump/raw/$t" "$config" "$inference_config")
    [ "$model_file" = none ] || inputs+=("$model_file")
    py -m espnet_lalora.bin.stamp mark "$dir/.done" "$whisper_id $extra $lang" "${inputs[@]}"
  done
}

if runs 10; then
  stage_start 10 "decoding: fine-tuned model(s)$([ "$zero_shot" = true ] && echo ' and zero-shot Whisper')"
  if [ "$zero_shot" = true ]; then
    py -m espnet_lalora.bin.make_zeroshot_config --asr_config "$train_config" --token_list "$token_list" \
      --whisper_model "$whisper_model" --out "$zero_shot_exp/config.yaml" \
      || die "the zero-shot config failed (python -m espnet_lalora.bin.make_zeroshot_config --asr_config $train_config)"
  fi
  for t in $test_sets; do
    dir=dump/raw/$(dump_name "$t")
    [ -f "$dir/.done" ] && continue
    [ -d "$(data_path "$t")" ] || die "--test_sets $t: no data dir at $(data_path "$t") (and $dir was not made by stage 3)"
    log "$dir was not formatted by stage 3 (test set $t given later): formatting it now"
    format_set "$(data_path "$t")" "$dir"
  done
  for exp in $(decoded_exps); do
    plan=$(decode_plan "$exp") || die "cannot list what to decode of $exp"
    while IFS=$'\t' read -r suffix config model_file extra; do
      [ -n "$config" ] || continue
      suffix=${suffix#@}
      log "decoding $exp/decode_${inference_tag}${suffix} ($([ "$model_file" = none ] && echo "$config" || echo "$model_file")${extra:+; $extra})"
      decode_model "$exp" "$suffix" "$config" "$model_file" "$inference_args $extra"
    done <<< "$plan"
  done
  stage_end 10
fi

if runs 11; then
  stage_start 11 "scoring with sclite (CER and WER)"
  for exp in $(decoded_exps); do
    plan=$(decode_plan "$exp") || die "cannot list what was decoded of $exp"
    for suffix in $(cut -f1 <<< "$plan"); do
      suffix=${suffix#@}
      for t in $test_names; do
        dir=$exp/decode_${inference_tag}${suffix}/$t
        [ -f "$dir/text" ] || die "$dir/text is missing; run stage 10 first"
        once "$dir/.score.done" "$lang" "$dir is scored" "dump/raw/$t/text" "dump/raw/$t/utt2lang" "$dir/text" -- \
          py -m espnet_lalora.bin.score --ref "dump/raw/$t/text" --hyp "$dir/text" \
            --utt2lang "dump/raw/$t/utt2lang" --lang "$lang" --out "$dir" \
          || die "scoring $dir failed"
      done
    done
  done
  stage_end 11
fi

if runs 12; then
  stage_start 12 "report: RESULTS.md"
  for exp in $(decoded_exps); do
    once "$exp/.report.done" "" "$exp/RESULTS.md is up to date" \
      "$exp"/decode_*/*/.score.done "$exp/export/params.yaml" -- \
      py -m espnet_lalora.bin.make_report --exp "$exp" || die "report for $exp failed"
  done
  once exp/.summary.done "" "exp/RESULTS.md is up to date" exp/asr_*/.report.done -- \
    py -m espnet_lalora.bin.make_report --summary exp || die "summary report failed"
  log "results: $asr_exp/RESULTS.md and exp/RESULTS.md"
  stage_end 12
fi
