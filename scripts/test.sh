#!/usr/bin/env bash
# Passes the tests on a fresh machine: installs what they need, then runs format,
# lint, unit/integration/doc tests, the example CLI tests and a benchmark smoke run.
# Usage: scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/gitpod-refarch/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# No incremental caches: every fresh clone (CI) would add gigabytes of them to the
# shared target directory, and a test run gains nothing from them.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
command -v cargo >/dev/null || { echo "error: cargo is required (https://rustup.rs)" >&2; exit 1; }

# Real servers the tests start on 127.0.0.1 (random ports): moto for the AWS APIs.
MOTO_VERSION="5.2.1"
if ! command -v moto_server >/dev/null 2>&1 && ! python3 -c 'import moto.server' 2>/dev/null; then
  echo "== installing moto[server]==$MOTO_VERSION (PyPI)"
  python3 -m pip install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
  command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
fi
if ! command -v moto_server >/dev/null 2>&1; then
  # pip's script directory may not be on PATH: use the module through a shim.
  shim_dir="$CARGO_TARGET_DIR/bin"
  mkdir -p "$shim_dir"
  printf '#!/bin/sh\nexec python3 -m moto.server "$@"\n' > "$shim_dir/moto_server"
  chmod +x "$shim_dir/moto_server"
  export PATH="$shim_dir:$PATH"
fi

# The GCS JSON API emulator for the storage data-plane test.
GCS_EMULATOR_VERSION="2026.7.19"
if ! python3 -c 'import gcp_storage_emulator' 2>/dev/null; then
  echo "== installing gcp-storage-emulator==$GCS_EMULATOR_VERSION (PyPI)"
  python3 -m pip install --quiet --disable-pip-version-check "gcp-storage-emulator==$GCS_EMULATOR_VERSION"
  command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
fi

# Debian's bind9 (a real DNS server) for the DNS delegation check.
export PATH="$PATH:/usr/sbin"
if ! command -v named >/dev/null 2>&1; then
  echo "== installing bind9 (Debian)"
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get install -y -q --no-install-recommends bind9 bind9-utils >/dev/null 2>&1 \
    || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q --no-install-recommends bind9 bind9-utils >/dev/null; }
fi

# The self-managed parts' real servers (gitpod-refarch-selfmanaged tests start private
# instances on random ports): Debian's MariaDB, Docker's registry (distribution) with
# htpasswd from apache2-utils. A policy-rc.d that denies service starts keeps the
# packaged MariaDB service from starting during the install (and is removed after).
missing_pkgs=""
command -v mariadbd >/dev/null 2>&1 || missing_pkgs="$missing_pkgs mariadb-server"
command -v docker-registry >/dev/null 2>&1 || missing_pkgs="$missing_pkgs docker-registry"
command -v htpasswd >/dev/null 2>&1 || missing_pkgs="$missing_pkgs apache2-utils"
if [ -n "$missing_pkgs" ]; then
  echo "== installing$missing_pkgs (Debian)"
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  policy_added=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
    $sudo chmod 755 /usr/sbin/policy-rc.d
    policy_added=1
  fi
  # shellcheck disable=SC2086
  $sudo apt-get install -y -q --no-install-recommends $missing_pkgs >/dev/null 2>&1 \
    || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q --no-install-recommends $missing_pkgs >/dev/null; }
  if [ -n "$policy_added" ]; then $sudo rm -f /usr/sbin/policy-rc.d; fi
fi

# Debian's kubectl (kubernetes-client) runs the guide's kubectl steps against fake-kube
# (scripts/kubectl-suite.sh, from the fake-kube tests, which use $GITPOD_REFARCH_KUBECTL).
if [ -z "${GITPOD_REFARCH_KUBECTL:-}" ]; then
  kubectl_dir="$HOME/.cache/gitpod-refarch/kubernetes-client"
  kubectl_owner="$(dpkg -S /usr/bin/kubectl 2>/dev/null | cut -d: -f1 || true)"
  if [ "$kubectl_owner" = "kubernetes-client" ]; then
    export GITPOD_REFARCH_KUBECTL=/usr/bin/kubectl
  elif [ -x "$kubectl_dir/usr/bin/kubectl" ]; then
    export GITPOD_REFARCH_KUBECTL="$kubectl_dir/usr/bin/kubectl"
  elif [ -z "$kubectl_owner" ]; then
    echo "== installing kubernetes-client (Debian)"
    sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get install -y -q --no-install-recommends kubernetes-client >/dev/null 2>&1 \
      || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q --no-install-recommends kubernetes-client >/dev/null; }
    export GITPOD_REFARCH_KUBECTL=/usr/bin/kubectl
  else
    # Another package owns /usr/bin/kubectl (the Google Cloud SDK's, say): unpack
    # Debian's package next to it instead of replacing it.
    echo "== unpacking kubernetes-client (Debian) into $kubectl_dir (/usr/bin/kubectl is $kubectl_owner's)"
    deb_dir="$(mktemp -d)"
    (cd "$deb_dir" && { apt-get download -q kubernetes-client >/dev/null 2>&1 \
      || { sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"; $sudo apt-get update -q >/dev/null && apt-get download -q kubernetes-client >/dev/null; }; })
    mkdir -p "$kubectl_dir"
    dpkg-deb -x "$deb_dir"/kubernetes-client_*.deb "$kubectl_dir"
    rm -rf "$deb_dir"
    export GITPOD_REFARCH_KUBECTL="$kubectl_dir/usr/bin/kubectl"
  fi
fi
"$GITPOD_REFARCH_KUBECTL" version --client >/dev/null

# Google's API discovery documents: what the GCP fake is built from and checked against.
scripts/fetch-discovery.sh
# Google's official discovery-based Python client drives the GCP fake through the
# guide's sequence (crates/gitpod-refarch-fake-gcp/tests/python_clients.rs).
scripts/install-google-clients.sh

# The official azure-mgmt-* Python packages: their models check every call the Azure
# fake answers, and their clients drive it as an independent client.
scripts/fetch-azure-models.sh
scripts/install-azure-clients.sh
export GITPOD_REFARCH_AZURE_MODELS="${GITPOD_REFARCH_AZURE_MODELS:-$HOME/.cache/gitpod-refarch/azure-models/models.json}"

# The official Kubernetes and cert-manager schemas (npm kubernetes-models,
# @kubernetes-models/cert-manager) every object the bootstrap emits is validated with.
command -v node >/dev/null 2>&1 || {
  echo "== installing nodejs and npm (Debian)"
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get install -y -q --no-install-recommends nodejs npm >/dev/null 2>&1 \
    || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q --no-install-recommends nodejs npm >/dev/null; }
}
scripts/install-k8s-models.sh

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
step() { echo; echo "== $*"; }

start=$(date +%s)
step "format";  cargo fmt --all -- --check
step "lint";    cargo clippy --workspace --all-targets --locked -- -D warnings
                cargo clippy -p gitpod-refarch-examples --no-default-features --all-targets --locked -- -D warnings
step "docs";    RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet
step "tests";   cargo test --workspace --locked 2>&1 | tee -a "$log"
step "a provider written outside the SDK (examples/examples/existing_registry.rs)"
cargo run -q -p gitpod-refarch-examples --no-default-features --example existing_registry --locked 2>&1 | tee -a "$log" | tail -3
step "benchmarks (one iteration each, as tests)"
cargo test -p gitpod-refarch-benches --benches --locked 2>&1 | tee -a "$log"

passed=$(awk '/^test result:/ { for (i = 1; i <= NF; i++) if ($i ~ /^passed/) s += $(i-1) } END { print s + 0 }' "$log")
failed=$(awk '/^test result:/ { for (i = 1; i <= NF; i++) if ($i ~ /^failed/) s += $(i-1) } END { print s + 0 }' "$log")
echo
echo "took $(( $(date +%s) - start ))s"
echo "tests: ${passed:-0} passed, ${failed:-0} failed"
[ "${failed:-0}" -eq 0 ]
