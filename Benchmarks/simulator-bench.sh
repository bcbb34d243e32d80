#!/usr/bin/env bash
# The simulator's speed: 1,000 seeds (release build), events per second, virtual time per wall
# time (how much faster than a real cluster the fault schedules run), wall time per seed p50/p99,
# and the cluster's convergence after the heal (virtual seconds) p50/p99.
#   Benchmarks/simulator-bench.sh [--seeds N]
# Writes Benchmarks/results/simulator-latest.json.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p Benchmarks/results
scripts/simulate --seeds 1000 "$@" --json Benchmarks/results/simulator-latest.json | tail -2
