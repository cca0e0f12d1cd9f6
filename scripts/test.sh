#!/usr/bin/env bash
# Passes the tests on a fresh machine: installs what they need, then runs format,
# lint, unit/integration/doc tests, the example CLI tests and a benchmark smoke run.
# Usage: scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/gitpod-refarch/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
command -v cargo >/dev/null || { echo "error: cargo is required (https://rustup.rs)" >&2; exit 1; }

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
step() { echo; echo "== $*"; }

start=$(date +%s)
step "format";  cargo fmt --all -- --check
step "lint";    cargo clippy --workspace --all-targets --locked -- -D warnings
step "docs";    RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet
step "tests";   cargo test --workspace --locked 2>&1 | tee -a "$log"
step "benchmarks (one iteration each, as tests)"
cargo test -p gitpod-refarch-benches --benches --locked 2>&1 | tee -a "$log"

passed=$(awk '/^test result:/ { for (i = 1; i <= NF; i++) if ($i ~ /^passed/) s += $(i-1) } END { print s + 0 }' "$log")
failed=$(awk '/^test result:/ { for (i = 1; i <= NF; i++) if ($i ~ /^failed/) s += $(i-1) } END { print s + 0 }' "$log")
echo
echo "took $(( $(date +%s) - start ))s"
echo "tests: ${passed:-0} passed, ${failed:-0} failed"
[ "${failed:-0}" -eq 0 ]
