#!/usr/bin/env bash
# Bus throughput (100 B and 64 KiB) and round-trip latency, side by side with the raw TCP floor.
#   Benchmarks/bus-bench.sh [bus-bench options, e.g. --small-count 100000]
# Writes Benchmarks/results/bus-latest.json and prints a table with ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
export TMPDIR="${TMPDIR:-$PWD/.tmp}"; mkdir -p "$TMPDIR" Benchmarks/results
gcc -O2 -Wall -o "$TMPDIR/raw_tcp_floor" Benchmarks/RawTCPFloor/raw_tcp_floor.c -lpthread
flock "$TMPDIR/build.lock" swift build -c release --product bus-bench >/dev/null
"$(swift build -c release --show-bin-path)/bus-bench" --floor "$TMPDIR/raw_tcp_floor" --json Benchmarks/results/bus-latest.json "$@"
