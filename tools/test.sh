#!/usr/bin/env bash
# The test command: installs what is missing (tools/install.sh, idempotent), then runs the suite.
# Extra arguments go to pytest, e.g. `bash tools/test.sh -k ct2 -x`.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$root/tools/install.sh"
py=${LALORA_PYTHON:-${LALORA_VENV:-$root/.venv}/bin/python}
cd "$root"
# Two workers (pytest-xdist), each test file on one of them: most of the suite is recipe runs
# whose single-threaded start-ups leave a core idle. LALORA_TEST_WORKERS=0: one process.
workers=${LALORA_TEST_WORKERS:-2}
[[ $workers =~ ^[0-9]+$ ]] || { echo "error: LALORA_TEST_WORKERS must be a whole number (0 or 1: one process), got '$workers'" >&2; exit 2; }
parallel=()
# --no-loadscope-reorder: files in tests/conftest.py's order (longest first), not by test count
[ "$workers" -le 1 ] || parallel=(-n "$workers" --dist loadfile --no-loadscope-reorder)
exec "$py" -m pytest -q --durations=12 "${parallel[@]}" tests "$@"  # the slowest: CI near 20 min
