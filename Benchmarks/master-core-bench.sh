#!/usr/bin/env bash
# The master core's CPU per agent as the cluster grows (no I/O): N agents re-registering with a
# leader that recovered them (as after a failover), then one health-check tick; the ratio to the
# smallest N shows whether a cost is linear (about 1.0) or grows with the cluster.
# Results: Benchmarks/results/master-core-latest.json (unless --json PATH is given).
#   Benchmarks/master-core-bench.sh [--agents 1000,3000,10000] [--rounds 5] [--json PATH]
set -euo pipefail
cd "$(dirname "$0")/.."
export TMPDIR="${TMPDIR:-$PWD/.tmp}"; mkdir -p "$TMPDIR" Benchmarks/results
lock=${BUILD_LOCK:-$TMPDIR/build.lock}
flock "$lock" swift build -c release --product master-core-bench 2>&1 | grep -E "error|warning: " >&2 || true
bin=$(swift build -c release --show-bin-path)/master-core-bench
case " $* " in
  *" --json "*) exec flock "$lock" "$bin" "$@" ;;
  *) exec flock "$lock" "$bin" --json Benchmarks/results/master-core-latest.json "$@" ;;
esac
