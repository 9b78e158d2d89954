#!/usr/bin/env bash
# The Python package's tests: build the wheel once (dev profile, in the workspace's target/),
# install it into a venv made here (target/py-venv), run pytest against the simulator.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p target
venv=target/py-venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q "maturin>=1.6,<2" "datafusion>=55,<56" pyarrow pandas polars datasets pytest
# --deps: only the venv and its packages (CI installs them while Rust compiles)
[ "${1:-}" = "--deps" ] && exit 0
rm -rf target/wheels
"$venv/bin/maturin" build --profile dev --locked -m python/Cargo.toml -o target/wheels
"$venv/bin/pip" install -q --force-reinstall --no-deps target/wheels/datafusion_prs-*.whl
# from the repository root, so that python/datafusion_prs (no extension module) is not imported
# -rs names skipped tests: here, with every optional package installed, none may be skipped
"$venv/bin/python" -m pytest -q -rs python/tests | tee target/py-tests.log
if grep -q "skipped" target/py-tests.log; then
  echo "python/test.sh: tests were skipped (see above)" >&2
  exit 1
fi
