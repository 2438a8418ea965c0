# Sourced by a recipe's run.sh: the options of the recipe's own data preparation (local/data.sh),
# given on run.sh's command line like the driver's (./run.sh --hours 2 --langs ja,ko).
#   data_option NAME DEFAULT HELP    declares one (before split_options)
#   split_options "$@"               sets driver_args: every other option, then
#                                    --local_data_opts "<data options> <the user's --local_data_opts>"
# Values must not contain spaces (the driver splits --local_data_opts on them).
declare -a data_option_names=() driver_args=()
declare -A data_option_help=()
data_option() { data_option_names+=("$1"); printf -v "data_opt_$1" '%s' "$2"; data_option_help[$1]=$3; }

split_options() {
  local user_opts="" key value name n opts="" v
  while [ $# -gt 0 ]; do
    case "$1" in
      --help|-h)
        echo "Options of this recipe's data preparation (local/data.sh; default in brackets):"
        for name in "${data_option_names[@]}"; do
          v=data_opt_$name; printf '  --%-22s %s [%s]\n' "$name" "${data_option_help[$name]}" "${!v}"
        done
        driver_args+=("$1"); shift; continue ;;
      --*=*) key=${1%%=*}; value=${1#*=}; n=1 ;;
      --*) key=$1; value=${2-}; n=2 ;;
      *) driver_args+=("$1"); shift; continue ;;  # the driver names the bad argument
    esac
    name=${key#--}; name=${name//-/_}
    [ "$n" = 1 ] || [ $# -ge 2 ] || { echo "error: option $key needs a value (see --help)" >&2; exit 1; }
    if [ -n "${data_option_help[$name]+set}" ]; then
      [[ $value != *" "* ]] || { echo "error: --$name '$value': no spaces allowed" >&2; exit 1; }
      printf -v "data_opt_$name" '%s' "$value"
    elif [ "$name" = local_data_opts ]; then
      user_opts=$value
    else
      driver_args+=("${@:1:$n}")
    fi
    shift "$n"
  done
  for name in "${data_option_names[@]}"; do v=data_opt_$name; opts+="--$name ${!v} "; done
  driver_args+=(--local_data_opts "$opts$user_opts")
}
