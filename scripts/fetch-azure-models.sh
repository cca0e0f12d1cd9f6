#!/usr/bin/env bash
# Fetch the official azure-mgmt-* Python wheels (pinned versions, checked sha256s, no
# dependencies) the Azure fake (crates/gitpod-refarch-fake-azure) is validated against,
# and extract their operations and wire models into one JSON file with
# scripts/azure-models.py. Only PyPI is contacted; nothing is imported or installed.
#
# Wheels land in ${GITPOD_REFARCH_AZURE_MODELS_DIR:-$HOME/.cache/gitpod-refarch/azure-models};
# the JSON is written to ${GITPOD_REFARCH_AZURE_MODELS:-<that dir>/models.json}. Both are
# caches and never committed. Re-running is cheap: present wheels are only re-checked,
# and the extraction is skipped while the wheels and the extractor are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

# name==version sha256 (each wheel's api-version is the one the provider pins:
# see the header of scripts/azure-models.py and notes on azure-mgmt-network below).
# azure-mgmt-network 30.2.0 is the last release whose default api-version is 2025-05-01
# (31.x: 2025-07-01, 33.x: 2026-03-01); azure-mgmt-resource 26.0.0's `resources`
# subpackage defaults to 2025-04-01.
WHEELS=(
  "azure-mgmt-containerservice==41.8.0 ef6569e0efe1b82d99554bcb9fd6d888850267d5c4ec94d54544c1fee26b7476"
  "azure-mgmt-mysqlflexibleservers==1.0.0 283f4f7140c5d94b5ca542fa8ebbd3b442263e770e1961590977a5cebcf9c4ad"
  "azure-mgmt-containerregistry==15.0.0 e7d6302e8b993b53c3167a255dd8fae75fc2f1dc0e39ae9fa97fb4b7ed5d25d1"
  "azure-mgmt-dns==9.0.0 00bd1d9d679d77aeba9178782d03c833549a4077147c9d78fedbfcd5909be633"
  "azure-mgmt-msi==7.1.0 4810d5559e71bd3c4e3e8bce311753fbe993d2bda23805bb81d3ca66786ad4da"
  "azure-mgmt-authorization==4.0.0 d8feeb3842e6ddf1a370963ca4f61fb6edc124e8997b807dd025bc9b2379cd1a"
  "azure-mgmt-resource==26.0.0 ef36559a4c0843b4272aa584efb455c686e4c3f6357421b38c82f405c01a9a9f"
  "azure-mgmt-privatedns==2.0.0 c04bfaab7bbfaf2c432dcf4ced18ea0373032f2c87f66d78c17f83baf5930644"
  "azure-mgmt-network==30.2.0 a87edffd7c38aa9d3494daa8d42914213b0863a9072cf8c7c7e48018b12b6532"
)

DEST="${GITPOD_REFARCH_AZURE_MODELS_DIR:-$HOME/.cache/gitpod-refarch/azure-models}"
OUT="${GITPOD_REFARCH_AZURE_MODELS:-$DEST/models.json}"
mkdir -p "$DEST"

# --list: print the pinned requirements (used by scripts/install-azure-clients.sh).
if [[ "${1:-}" == "--list" ]]; then
  for w in "${WHEELS[@]}"; do echo "${w%% *}"; done
  exit 0
fi

wheel_file() { # name==version -> expected wheel file name
  local spec="$1" name version
  name="${spec%%==*}"; version="${spec##*==}"
  echo "$DEST/${name//-/_}-${version}-py3-none-any.whl"
}

sha_of() {
  if command -v sha256sum >/dev/null 2>&1; then sha256sum "$1" | cut -d' ' -f1
  else python3 -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$1"; fi
}

missing=()
for w in "${WHEELS[@]}"; do
  spec="${w%% *}"; sum="${w##* }"; file="$(wheel_file "$spec")"
  # Other versions of the same package (left by an earlier pin) would confuse the extractor.
  name="${spec%%==*}"
  for old in "$DEST/${name//-/_}"-*.whl; do
    [[ -e "$old" && "$old" != "$file" ]] && rm -f "$old"
  done
  if [[ -s "$file" && "$(sha_of "$file")" == "$sum" ]]; then continue; fi
  rm -f "$file"
  missing+=("$spec")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "== downloading ${missing[*]} (PyPI)"
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    -d "$DEST" "${missing[@]}"
fi
for w in "${WHEELS[@]}"; do
  spec="${w%% *}"; sum="${w##* }"; file="$(wheel_file "$spec")"
  [[ -s "$file" ]] || { echo "error: $spec: $file was not downloaded" >&2; exit 1; }
  got="$(sha_of "$file")"
  if [[ "$got" != "$sum" ]]; then
    rm -f "$file"
    echo "error: $spec: sha256 $got, expected $sum (removed; a republished wheel needs a review of scripts/azure-models.py)" >&2
    exit 1
  fi
done

# Skip the extraction (about 10 s) while the wheels and the extractor are unchanged.
stamp="$( { printf '%s\n' "${WHEELS[@]}"; cat scripts/azure-models.py; } | { sha256sum 2>/dev/null || python3 -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())'; } | cut -d' ' -f1)"
if [[ -s "$OUT" && -f "$OUT.stamp" && "$(cat "$OUT.stamp")" == "$stamp" ]]; then
  echo "azure models already in $OUT"
  exit 0
fi
python3 scripts/azure-models.py "$DEST" "$OUT"
echo "$stamp" > "$OUT.stamp"
