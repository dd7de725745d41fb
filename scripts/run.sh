#!/usr/bin/env bash
# run.sh: set up, start the local registry (the docker.io mirror), then Manifold.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
DATA=${MANIFOLD_DATA:-data}
MIRROR=${MANIFOLD_MIRROR:-127.0.0.1:5000}
mkdir -p "$DATA"
DATA=$(cd "$DATA" && pwd)
pid=$(bash scripts/registry.sh "$MIRROR" "$DATA/registry")
[ -n "$pid" ] && trap 'kill $pid 2>/dev/null || true' EXIT
go build -o bin/manifold ./cmd/manifold
MANIFOLD_DATA=$DATA MANIFOLD_MIRROR=$MIRROR bin/manifold serve "$@"
