#!/usr/bin/env bash
# The test command: installs what is missing (tools/install.sh, idempotent), then runs the suite.
# Extra arguments go to pytest, e.g. `bash tools/test.sh -k ct2 -x`.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$root/tools/install.sh"
py=${LALORA_PYTHON:-${LALORA_VENV:-$root/.venv}/bin/python}
cd "$root"
exec "$py" -m pytest -q --durations=12 tests "$@"  # the slowest tests: CI stays near 20 min
