#!/usr/bin/env bash
# Bus throughput (100 B and 64 KiB) and round-trip latency, side by side with the raw TCP floors
# (one write per frame, and batched: writev of many frames, 64 KiB reads) in the same run, with
# CPU time, allocations and context switches per message.
#   Benchmarks/bus-bench.sh [bus-bench options, e.g. --seconds 5 --repeats 5 --placement pool|direct]
#     writes Benchmarks/results/bus-latest.json (unless --json PATH is given) and prints a table.
#     Adds TLS rows (the same figures over mutual TLS, "floor" = the plaintext bus in the same run)
#     with certificates from scripts/gen-certs; NO_TLS=1 leaves them out.
#   Benchmarks/bus-bench.sh --alloc-check [--max-allocs-per-message N --max-allocs-per-round-trip N]
#     counts allocations per 100 B message (counts, no clock) and exits 1 above the limits.
# The build and the run both hold the build lock (${BUILD_LOCK:-$TMPDIR/build.lock}): no other
# build competes for the cores while it measures.
set -euo pipefail
cd "$(dirname "$0")/.."
export TMPDIR="${TMPDIR:-$PWD/.tmp}"; mkdir -p "$TMPDIR" Benchmarks/results
gcc -O2 -Wall -o "$TMPDIR/raw_tcp_floor" Benchmarks/RawTCPFloor/raw_tcp_floor.c -lpthread
gcc -O2 -Wall -shared -fPIC -o "$TMPDIR/libmalloc_count.so" Benchmarks/RawTCPFloor/malloc_count.c
lock="${BUILD_LOCK:-$TMPDIR/build.lock}"
flock "$lock" swift build -c release --product bus-bench >/dev/null
bench="$(swift build -c release --show-bin-path)/bus-bench"
tls=()
if [ -z "${NO_TLS:-}" ]; then
  certs="$TMPDIR/bus-bench-certs"
  [ -f "$certs/master.pem" ] || scripts/gen-certs "$certs" >/dev/null
  tls=(--tls-certs "$certs")
fi
# The allocation counter is preloaded for both programs (and inherited by the floor).
export LD_PRELOAD="$TMPDIR/libmalloc_count.so${LD_PRELOAD:+:$LD_PRELOAD}"
case " $* " in
  *" --alloc-check "*) exec flock "$lock" "$bench" "$@" ;;
  *" --json "*) exec flock "$lock" "$bench" --floor "$TMPDIR/raw_tcp_floor" "${tls[@]}" "$@" ;;
  *) exec flock "$lock" "$bench" --floor "$TMPDIR/raw_tcp_floor" --json Benchmarks/results/bus-latest.json "${tls[@]}" "$@" ;;
esac
