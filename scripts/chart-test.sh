#!/usr/bin/env bash
# Offline tests of the Helm chart (charts/dialer) with Helm's own Go library: strict lint, render with the
# default values and values-scaled.yaml, Kubernetes schema validation of every rendered resource.
# No helm binary and no cluster needed: helm-python-sdk ships Helm's SDK as a native library in its wheel.
#
# Usage: scripts/chart-test.sh [pytest args...]
# Installs its tools into target/venv (override with CHART_TEST_VENV), or with pip --user where venv is missing.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# helm-python-sdk is alpha: its API is pinned to the version the tests were written against.
requirements=(pytest "helm-python-sdk==0.2.2" "kubernetes-validate>=1.30")
python="${PYTHON:-python3}"
venv="${CHART_TEST_VENV:-$root/target/venv}"

if [ -x "$venv/bin/python" ] || "$python" -m venv "$venv" >/dev/null 2>&1; then
    py="$venv/bin/python"
else
    echo "chart-test: no venv module; installing with pip --user" >&2
    rm -rf "$venv"
    py="$python"
    pip_user=(--user)
fi

if ! "$py" -c 'import pytest, helm_python, kubernetes_validate' >/dev/null 2>&1; then
    "$py" -m pip install -q --disable-pip-version-check ${pip_user[@]+"${pip_user[@]}"} "${requirements[@]}"
fi

# No .pytest_cache or __pycache__ in the work tree.
export PYTHONDONTWRITEBYTECODE=1
exec "$py" -m pytest -q -p no:cacheprovider charts/tests "$@"
