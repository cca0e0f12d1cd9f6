#!/usr/bin/env bash
# Install the official Azure Python management clients (the same pinned azure-mgmt-*
# wheels scripts/fetch-azure-models.sh downloads and checks, plus azure-core and
# azure-mgmt-core) for scripts/azure-python-clients.py, which drives the Azure fake
# (crates/gitpod-refarch-fake-azure) as an independent client. PyPI only.
# Skips the install when the pinned versions are already there.
set -euo pipefail
cd "$(dirname "$0")/.."

# The runtime the generated clients need (their own floors: azure-mgmt-core>=1.6.0,
# isodate>=0.6.1, msrest>=0.7.1 for mysqlflexibleservers, azure-common~=1.1).
RUNTIME=(
  "azure-core==1.41.0"
  "azure-mgmt-core==1.6.0"
  "azure-common==1.1.28"
  "msrest==0.7.1"
  "isodate==0.7.2"
)

# The verified wheels (sha256-checked) serve as a local index for the clients.
scripts/fetch-azure-models.sh >/dev/null
DEST="${GITPOD_REFARCH_AZURE_MODELS_DIR:-$HOME/.cache/gitpod-refarch/azure-models}"
mapfile -t CLIENTS < <(scripts/fetch-azure-models.sh --list)

if python3 - "${CLIENTS[@]}" "${RUNTIME[@]}" <<'PY'
import sys
from importlib.metadata import version, PackageNotFoundError
for spec in sys.argv[1:]:
    name, want = spec.split("==")
    try:
        if version(name) != want:
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
PY
then
  echo "azure management clients already installed"
  exit 0
fi

echo "== installing the azure-mgmt-* clients (PyPI): ${CLIENTS[*]} ${RUNTIME[*]}"
pip_install() {
  python3 -m pip install --quiet --disable-pip-version-check --find-links "$DEST" "$@"
}
if ! out="$(pip_install "${CLIENTS[@]}" "${RUNTIME[@]}" 2>&1)"; then
  if grep -q externally-managed-environment <<<"$out"; then
    # Debian's system python (PEP 668): the test machine is disposable, install anyway.
    pip_install --break-system-packages "${CLIENTS[@]}" "${RUNTIME[@]}"
  else
    echo "$out" >&2
    exit 1
  fi
fi
command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
python3 -c 'import azure.mgmt.containerservice, azure.mgmt.network, azure.mgmt.mysqlflexibleservers' \
  || { echo "error: the azure-mgmt-* clients do not import after installing" >&2; exit 1; }
