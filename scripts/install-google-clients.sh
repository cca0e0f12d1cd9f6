#!/usr/bin/env bash
# Install Google's official discovery-based Python client (google-api-python-client, the
# same pinned version scripts/fetch-discovery.sh takes the discovery documents from)
# for scripts/google-python-clients.py, which drives the GCP fake
# (crates/gitpod-refarch-fake-gcp) as an independent client. PyPI only.
# Skips the install when the pinned versions are already there.
set -euo pipefail
cd "$(dirname "$0")/.."

# Keep google-api-python-client in step with VERSION in scripts/fetch-discovery.sh.
PACKAGES=(
  "google-api-python-client==2.202.0"
  "google-api-core==2.44.0"
  "google-auth==2.63.0"
  "google-auth-httplib2==0.4.4"
  "httplib2==0.32.1"
  "uritemplate==4.2.0"
  # google-cloud-storage, for scripts/google-cloud-storage-client.py (the fake's GCS
  # JSON API), with its own dependencies pinned.
  "google-cloud-storage==3.17.1"
  "google-cloud-core==2.8.0"
  "google-resumable-media==2.11.0"
  "google-crc32c==1.9.0"
  "requests==2.34.2"
)

if python3 - "${PACKAGES[@]}" <<'PY'
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
  echo "google-api-python-client already installed"
  exit 0
fi

echo "== installing google-api-python-client (PyPI): ${PACKAGES[*]}"
pip_install() {
  python3 -m pip install --quiet --disable-pip-version-check "$@"
}
if ! out="$(pip_install "${PACKAGES[@]}" 2>&1)"; then
  if grep -q externally-managed-environment <<<"$out"; then
    # Debian's system python (PEP 668): the test machine is disposable, install anyway.
    pip_install --break-system-packages "${PACKAGES[@]}"
  else
    echo "$out" >&2
    exit 1
  fi
fi
command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
python3 -c 'import googleapiclient.discovery, google.auth.credentials, httplib2, google.cloud.storage' \
  || { echo "error: google-api-python-client does not import after installing" >&2; exit 1; }
