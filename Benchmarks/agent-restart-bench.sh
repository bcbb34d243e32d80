#!/usr/bin/env bash
# Agent restart with running checkpointed tasks (default 100): SIGKILL and SIGTERM, 10 rounds each;
# time until every executor re-registered and until the agent re-registered with the master,
# p50/p99, beside the same restart of an agent with no tasks.
#   Benchmarks/agent-restart-bench.sh [--tasks 100] [--rounds 10]
# Writes Benchmarks/results/agent-restart-latest.json.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup
export TMPDIR="${TMPDIR:-$PWD/.tmp}"; mkdir -p "$TMPDIR" Benchmarks/results
for p in mesos-master mesos-agent mesos-executor example-framework agent-restart-bench; do
  flock "${BUILD_LOCK:-$TMPDIR/build.lock}" swift build -c release --product "$p" > "$TMPDIR/agent-restart-build.log" 2>&1 || { cat "$TMPDIR/agent-restart-build.log"; exit 1; }
done
BIN=$(swift build -c release --show-bin-path)
"$BIN/agent-restart-bench" --bin "$BIN" --json Benchmarks/results/agent-restart-latest.json "$@"
