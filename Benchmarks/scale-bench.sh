#!/usr/bin/env bash
# Failover at scale (issue 13: 10,000 agents): one standalone ZooKeeper, 3 masters, M agents in
# agent-swarm processes (one shared leader detector per process), the framework with running tasks;
# R failovers of the leader by SIGTERM and by SIGKILL for each M. Per failover: the time from the
# new leader's election until every agent re-registered, the leader's CPU time and resident memory
# (against a standby's: a master holding no agents), ZooKeeper's requests (`mntr`'s
# zk_packets_received, less its idle rate) and its CPU time, the swarms' CPU time.
#
#   Benchmarks/scale-bench.sh [options]
#     -r, --rounds R             failovers of each kind per agent count (default 3)
#     -m, --agents LIST          agent counts (default 1000,3000,10000; the first is the baseline)
#     -t, --session-timeout D    ZooKeeper session timeout of everything (default 10secs, Mesos's)
#     --agents-per-process N     agents per agent-swarm process (default 500)
#     --variants "L=FLAGS;..."   one run per variant, labelled L, with these extra agent-swarm flags
#                                (default "one-socket=@--return_routes=true"; e.g. "per-agent=--shared_detector=false
#                                --tick_interval=50ms --checkpoint_fsync=true": each agent with its own ZooKeeper
#                                session, 50 ms ticks and fsynced checkpoints, as before the shared detector).
#                                Flags after an @ go to the masters (e.g. "two-sockets=@--return_routes=false":
#                                the master opens its own connection to each agent, as Mesos does).
#                                nice=N among the swarm flags runs the swarms at niceness N: they yield
#                                the CPU to the masters, as agents on machines of their own would
#     --max-tasks N              tasks = min(M, N), one per agent (default 100)
#     --agents-dir DIR           the agents' work directories (default: a directory on /dev/shm when it is a
#                                tmpfs, else under .tmp/scale-bench). 10,000 agents here share one disk: their
#                                checkpoint writes (a new epoch floor each per failover, temporary file and rename)
#                                took a fifth of the swarms' CPU in ext4's inode allocator, a cost real agents pay
#                                each on its own host. "disk" keeps them under .tmp/scale-bench
#     --prefix NAME              results are Benchmarks/results/NAME.{json,md,png} (default scale-latest)
#     --note TEXT                added to the results
#
# Logs and raw records: .tmp/scale-bench/. The README's scale table comes from the JSON
# (Benchmarks/Failover/scale-report.py --table).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

AGENTS_DIR="" ROUNDS=3 AGENTS=1000,3000,10000 TIMEOUT=10secs PER_PROCESS=500 VARIANTS="one-socket=@--return_routes=true" MAX_TASKS=100 PREFIX=scale-latest NOTE=""
while [ $# -gt 0 ]; do
  case "$1" in
    -r|--rounds) ROUNDS=$2; shift ;;
    -m|--agents) AGENTS=$2; shift ;;
    -t|--session-timeout) TIMEOUT=$2; shift ;;
    --agents-per-process) PER_PROCESS=$2; shift ;;
    --variants) VARIANTS=$2; shift ;;
    --max-tasks) MAX_TASKS=$2; shift ;;
    --agents-dir) AGENTS_DIR=$2; shift ;;
    --prefix) PREFIX=$2; shift ;;
    --note) NOTE=$2; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

scripts/setup
for p in python3-matplotlib; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" && continue
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$p" >/dev/null
done

export TMPDIR="${TMPDIR:-$ROOT/.tmp}"; mkdir -p "$TMPDIR" Benchmarks/results
WORK="$TMPDIR/scale-bench"
rm -rf "$WORK"; mkdir -p "$WORK"
echo "== building (release)" >&2
LOCK="${BUILD_LOCK:-$TMPDIR/build.lock}"
t0=$(date +%s)
for p in mesos-master mesos-executor agent-swarm failover-bench; do
  flock "$LOCK" swift build -c release --product "$p" 2>&1 | grep -E "warning:|error:" >&2 || true
done
BUILD_S=$(( $(date +%s) - t0 ))
# A private copy: a rebuild by someone else meanwhile must not change the binaries under the run.
BUILT=$(swift build -c release --show-bin-path) BIN="$WORK/bin"
mkdir -p "$BIN"
for p in mesos-master mesos-executor agent-swarm failover-bench; do
  [ -x "$BUILT/$p" ] || { echo "build of $p failed" >&2; exit 1; }
  cp "$BUILT/$p" "$BIN/"
done

# 10,000 agents: the leader holds two sockets per agent (its link to the agent, the agent's to it).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
echo "== file descriptors: $(ulimit -n)" >&2
if [ -z "$AGENTS_DIR" ] && [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ]; then AGENTS_DIR=/dev/shm/scale-bench-agents; fi
[ "$AGENTS_DIR" = disk ] && AGENTS_DIR=""
AGENTS_FS=disk
if [ -n "$AGENTS_DIR" ]; then
  rm -rf "$AGENTS_DIR"; mkdir -p "$AGENTS_DIR"
  AGENTS_FS=$(stat -f -c %T "$AGENTS_DIR")
fi
echo "== agents' work directories: ${AGENTS_DIR:-$WORK} ($AGENTS_FS)" >&2
RUN="$WORK/run.jsonl"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
ZK_DIR="$WORK/zk"; mkdir -p "$ZK_DIR"
BENCH_PID=""
cleanup() {
  if [ -n "$BENCH_PID" ] && kill -0 "$BENCH_PID" 2>/dev/null; then
    kill -TERM "$BENCH_PID"
    while kill -0 "$BENCH_PID" 2>/dev/null; do sleep 0.2; done  # it stops its cluster first
  fi
  ZK_STOP_SIGNAL=KILL scripts/zk-standalone.sh stop "$ZK_DIR" 2>/dev/null || true
  [ -z "$AGENTS_DIR" ] || rm -rf "$AGENTS_DIR"
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT
port=$(ZK_HEAP=1g scripts/zk-standalone.sh start "$ZK_DIR" 2>"$ZK_DIR.log" | tail -1 | sed 's/.*://')
ZK_PID=$(cat "$ZK_DIR/zk.pid")
echo "== ZooKeeper at 127.0.0.1:$port (pid $ZK_PID)" >&2

IFS=';' read -r -a variant_list <<<"$VARIANTS"
for v in "${variant_list[@]}"; do
  label=${v%%=*} flags=${v#*=} master_flags=""
  case "$flags" in *@*) master_flags=${flags#*@} flags=${flags%%@*} ;; esac
  # nice=N among the swarm flags: the swarm processes run at that niceness (not an agent-swarm flag).
  nice=0 rest=""
  for f in $flags; do case "$f" in nice=*) nice=${f#nice=} ;; *) rest="$rest $f" ;; esac; done
  flags=${rest# }
  echo "== variant $label (agent-swarm $flags; masters $master_flags): M=$AGENTS, $ROUNDS rounds of SIGTERM and SIGKILL" >&2
  # In the background, so that a SIGTERM or SIGINT of this script reaches it (it then stops its cluster).
  "$BIN/failover-bench" run --zk-ports "$port" --zk-label standalone --zk-pids "$ZK_PID" --bin "$BIN" --agents "$AGENTS" \
    --rounds "$ROUNDS" --kinds term,kill --session-timeout "$TIMEOUT" --agents-per-process "$PER_PROCESS" \
    --max-tasks "$MAX_TASKS" ${flags:+"--swarm-flags=$flags"} ${master_flags:+"--master-flags=$master_flags"} --swarm-nice "$nice" ${AGENTS_DIR:+--agents-work "$AGENTS_DIR/$label"} --work "$WORK/cluster-$label" --out "$WORK/run-$label.jsonl" &
  BENCH_PID=$!
  wait "$BENCH_PID"
  /usr/bin/python3 -c 'import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line); r["variant"] = sys.argv[2]; print(json.dumps(r, sort_keys=True))' "$WORK/run-$label.jsonl" "$label" >> "$RUN"
done

LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
/usr/bin/python3 - "$WORK/meta.json" <<EOF
import json, sys
json.dump({"date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)", "git": "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)",
  "cores": $(nproc), "load_before": "$LOAD_BEFORE", "load_after": "$LOAD_AFTER", "session_timeout": "$TIMEOUT",
  "rounds": $ROUNDS, "agents": "$AGENTS", "agents_per_process": $PER_PROCESS, "variants": """$VARIANTS""",
  "max_tasks": $MAX_TASKS, "agents_fs": "$AGENTS_FS", "release_build_s": $BUILD_S, "note": """$NOTE"""}, open(sys.argv[1], "w"))
EOF
/usr/bin/python3 Benchmarks/Failover/scale-report.py "$RUN" "$WORK/meta.json" Benchmarks/results "$PREFIX"
