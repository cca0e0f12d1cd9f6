#!/usr/bin/env bash
# Install the pinned npm packages scripts/validate-k8s.mjs validates Kubernetes objects
# with (JSON schemas generated from the upstream OpenAPI and cert-manager CRD schemas).
# They land in ${GITPOD_REFARCH_NODE_DIR:-$HOME/.cache/gitpod-refarch/node} and are
# never committed. Does nothing when the pinned versions are already there.
set -euo pipefail

declare -A PINS=(
    [kubernetes-models]=5.1.0
    [@kubernetes-models/cert-manager]=6.0.0
)
DEST="${GITPOD_REFARCH_NODE_DIR:-$HOME/.cache/gitpod-refarch/node}"

command -v node >/dev/null && command -v npm >/dev/null ||
    { echo "error: node and npm are required (Node.js 18 or later)" >&2; exit 1; }

installed() { # prints the version of package $1 in $DEST, or nothing
    node -e 'try { console.log(require(process.argv[1]).version) } catch {}' \
        "$DEST/node_modules/$1/package.json"
}

missing=0
for pkg in "${!PINS[@]}"; do
    [[ "$(installed "$pkg")" == "${PINS[$pkg]}" ]] || missing=1
done
if [[ $missing -eq 0 ]]; then
    echo "kubernetes-models already installed in $DEST"
    exit 0
fi

mkdir -p "$DEST"
deps=""
for pkg in "${!PINS[@]}"; do
    deps+="${deps:+, }\"$pkg\": \"${PINS[$pkg]}\""
done
printf '{ "name": "gitpod-refarch-node", "private": true, "dependencies": { %s } }\n' "$deps" \
    >"$DEST/package.json"

echo "== installing ${!PINS[*]} into $DEST (npm)"
export NPM_CONFIG_UPDATE_NOTIFIER=false NPM_CONFIG_FUND=false NPM_CONFIG_AUDIT=false
(cd "$DEST" && npm install --no-audit --no-fund --omit=dev --no-update-notifier \
    --loglevel=error)

for pkg in "${!PINS[@]}"; do
    got="$(installed "$pkg")"
    [[ "$got" == "${PINS[$pkg]}" ]] ||
        { echo "error: $pkg is ${got:-missing}, wanted ${PINS[$pkg]}" >&2; exit 1; }
done
echo "kubernetes-models installed in $DEST"
