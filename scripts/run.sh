#!/usr/bin/env bash
# The main job: apply the reference architecture on the simulated cloud (no cloud
# account needed) and write the Gitpod installer config and secrets to ./out.
# Extra arguments go to the `apply` subcommand (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/gitpod-refarch/target}"
# Without the `aws` feature: the simulated cloud needs no cloud SDK (a short build).
exec cargo run --locked --quiet -p gitpod-refarch-examples --no-default-features --bin gitpod-refarch -- apply --out out "$@"
