#!/usr/bin/env bash
# The test command: set-up included (see scripts/bootstrap.sh), then ruff and mypy (pyproject.toml), the documentation
# build (docs/, warnings fail it), then the test suite.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -k relay`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/bootstrap.sh dev
echo "[furl] ruff check (lint settings in pyproject.toml)"
python -m ruff check .
echo "[furl] mypy (settings in pyproject.toml)"
python -m mypy
echo "[furl] documentation build (sphinx -W: a warning fails it)"
python -m sphinx -W --keep-going -q -b html docs docs/_build/html
# pytest exits 5 when no test ran: that is a failure here too (no masking of exit codes).
exec python -m pytest -q "$@"
