#!/usr/bin/env bash
# Fetch the Google API discovery documents the GCP fake (crates/gitpod-refarch-fake-gcp)
# is built from and validated against, from a pinned google-api-python-client wheel.
# They land in ${GITPOD_REFARCH_DISCOVERY_DIR:-$HOME/.cache/gitpod-refarch/discovery}
# and are never committed.
set -euo pipefail

VERSION=2.202.0
DOCS=(container.v1 sqladmin.v1 sqladmin.v1beta4 dns.v1 iam.v1 cloudresourcemanager.v1 cloudresourcemanager.v3 serviceusage.v1 cloudbilling.v1 artifactregistry.v1 compute.v1 storage.v1)
DEST="${GITPOD_REFARCH_DISCOVERY_DIR:-$HOME/.cache/gitpod-refarch/discovery}"

missing=0
for doc in "${DOCS[@]}"; do
    [[ -s "$DEST/$doc.json" ]] || missing=1
done
if [[ $missing -eq 0 ]]; then
    echo "discovery documents already in $DEST"
    exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps "google-api-python-client==$VERSION" -d "$tmp"
wheel="$(ls "$tmp"/google_api_python_client-"$VERSION"-*.whl)"
mkdir -p "$DEST"
python3 - "$wheel" "$DEST" "${DOCS[@]}" <<'PY'
import sys, zipfile
wheel, dest, docs = sys.argv[1], sys.argv[2], sys.argv[3:]
with zipfile.ZipFile(wheel) as z:
    for doc in docs:
        data = z.read(f"googleapiclient/discovery_cache/documents/{doc}.json")
        with open(f"{dest}/{doc}.json", "wb") as f:
            f.write(data)
PY
echo "discovery documents (google-api-python-client $VERSION) written to $DEST"
