#!/usr/bin/env bash
# Registry recovery at scale: N admitted agents in the format-2 layout (one znode per agent) on a
# real ZooKeeper, loaded by a fresh store with the agents' znodes read concurrently (512 in flight)
# vs one at a time (the baseline). Results: Benchmarks/results/registry-latest.json.
#
#   Benchmarks/registry-bench.sh [--agents N] [--rounds R] [--release]
set -euo pipefail
cd "$(dirname "$0")/.."
export TMPDIR="${TMPDIR:-$PWD/.tmp}"; mkdir -p "$TMPDIR"
config=debug; args=()
for a in "$@"; do if [ "$a" = "--release" ]; then config=release; else args+=("$a"); fi; done
lock=${BUILD_LOCK:-/work/main/.tmp/build.lock}
[ -e "$(dirname "$lock")" ] || lock="$TMPDIR/build.lock"
flock "$lock" swift build -c "$config" --product registry-bench 2>&1 | grep -E "error|warning: " >&2 || true
bin=$(swift build -c "$config" --show-bin-path)/registry-bench
flock "$lock" "$bin" "${args[@]}" --json Benchmarks/results/registry-latest.json
