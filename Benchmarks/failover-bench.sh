#!/usr/bin/env bash
# Failover latency of the HA cluster, side by side with kazoo's Election and Curator's LeaderLatch,
# and the ZooKeeper floor. For each ZooKeeper setup (standalone, 3-server ensemble): 3 masters,
# M agents (agent-swarm processes), an in-process framework with running tasks; R failovers of each
# kind (leader SIGTERM, SIGKILL, cut from ZooKeeper through a blackholed proxy).
#
#   Benchmarks/failover-bench.sh [options]
#     -r, --rounds R             failovers of each kind per agent count (default 5)
#     -m, --agents LIST          agent counts (default 1,10,100,1000)
#     -z, --zk LIST              ZooKeeper setups: standalone,ensemble (default both)
#     -t, --session-timeout D    ZooKeeper session timeout of everything (default 2secs)
#     --agent-backoff D          agents' --registration_backoff_factor (default 1secs, as Mesos)
#     --max-tasks N              tasks = min(M, N), one per agent (default 100)
#     --agents-per-process N     agents per agent-swarm process (default 250)
#     --baseline-rounds R        rounds of each baseline kind (default: max(R, 10))
#     --prefix NAME              results are Benchmarks/results/NAME.{md,json} and NAME-*.png
#                                (default failover-latest)
#     --note TEXT                added to the results (e.g. how busy the machine was)
#     -q, --quick                R=2, M=1,10, baseline rounds 3: a smoke run of a few minutes
#
# Writes Benchmarks/results/failover-latest.{md,json}, failover-latest-vs-agents.png and
# failover-latest-cdf.png, and prints the tables. Logs and raw records: .tmp/failover-bench/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

ROUNDS=5 AGENTS=1,10,100,1000 ZKS=standalone,ensemble TIMEOUT=2secs BACKOFF=1secs MAX_TASKS=100 PER_PROCESS=250
BASE_ROUNDS="" PREFIX=failover-latest NOTE=""
while [ $# -gt 0 ]; do
  case "$1" in
    -r|--rounds) ROUNDS=$2; shift ;;
    -m|--agents) AGENTS=$2; shift ;;
    -z|--zk) ZKS=$2; shift ;;
    -t|--session-timeout) TIMEOUT=$2; shift ;;
    --agent-backoff) BACKOFF=$2; shift ;;
    --max-tasks) MAX_TASKS=$2; shift ;;
    --agents-per-process) PER_PROCESS=$2; shift ;;
    --baseline-rounds) BASE_ROUNDS=$2; shift ;;
    --prefix) PREFIX=$2; shift ;;
    --note) NOTE=$2; shift ;;
    -q|--quick) ROUNDS=2 AGENTS=1,10 BASE_ROUNDS=3 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[ -n "$BASE_ROUNDS" ] || BASE_ROUNDS=$(( ROUNDS > 10 ? ROUNDS : 10 ))
TIMEOUT_MS=$(awk -v d="$TIMEOUT" 'BEGIN {
  n = d + 0; u = d; sub(/^[0-9.]+/, "", u)
  m = (u == "ms") ? 1 : (u == "mins") ? 60000 : 1000; printf "%d", n * m }')

# Packages: the project's, plus the baselines' (kazoo, Curator, a JDK for javac) and matplotlib.
scripts/setup
pkgs=(python3-kazoo python3-matplotlib libcurator-recipes-java libcurator-framework-java libcurator-client-java
      default-jdk-headless libslf4j-java)
missing=()
for p in "${pkgs[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

export TMPDIR="${TMPDIR:-$ROOT/.tmp}"; mkdir -p "$TMPDIR" Benchmarks/results
WORK="$TMPDIR/failover-bench"
rm -rf "$WORK"; mkdir -p "$WORK/java"
echo "== building (release)" >&2
for p in mesos-master mesos-executor agent-swarm failover-bench; do
  flock "$TMPDIR/build.lock" swift build -c release --product "$p" 2>&1 | grep -E "warning:|error:" >&2 || true
done
# A private copy: the harness restarts masters all along, and a rebuild by someone else meanwhile must not change them.
BUILT=$(swift build -c release --show-bin-path) BIN="$WORK/bin"
mkdir -p "$BIN"
for p in mesos-master mesos-executor agent-swarm failover-bench; do
  [ -x "$BUILT/$p" ] || { echo "build of $p failed" >&2; exit 1; }
  cp "$BUILT/$p" "$BIN/"
done
J=/usr/share/java
javac -d "$WORK/java" -cp "$J/curator-client.jar:$J/curator-framework.jar:$J/curator-recipes.jar:$J/zookeeper.jar:$J/zookeeper-jute.jar:$J/guava.jar:$J/slf4j-api.jar" \
  Benchmarks/baselines/CuratorContender.java
JAVA_CP="$J/curator-recipes.jar:$J/slf4j-nop.jar:$WORK/java"   # the recipes jar's manifest brings the rest

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
RUN="$WORK/run.jsonl"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
ZK_DIRS=()
cleanup() {
  for d in "${ZK_DIRS[@]}"; do
    case "$d" in
      *ensemble*) ZK_STOP_SIGNAL=KILL scripts/zk-ensemble.sh stop "$d" 2>/dev/null || true ;;
      *) ZK_STOP_SIGNAL=KILL scripts/zk-standalone.sh stop "$d" 2>/dev/null || true ;;
    esac
  done
}
trap cleanup EXIT

# ZooKeeper (the scripts' configuration has no per-IP connection limit: every agent connects from 127.0.0.1).
start_zk() {  # start_zk standalone|ensemble DIR -> comma-separated client ports
  local kind=$1 dir=$2 script=scripts/zk-standalone.sh
  [ "$kind" = ensemble ] && script=scripts/zk-ensemble.sh
  "$script" start "$dir" 2>"$dir.log" | tail -1 | tr ',' '\n' | sed 's/.*://' | paste -sd, -
}

IFS=, read -r -a zk_list <<<"$ZKS"
for kind in "${zk_list[@]}"; do
  case "$kind" in standalone) label=standalone ;; ensemble) label=ensemble3 ;; *) echo "unknown ZooKeeper setup $kind" >&2; exit 2 ;; esac
  dir="$WORK/zk-$kind"; mkdir -p "$dir"; ZK_DIRS+=("$dir")
  ports=$(start_zk "$kind" "$dir")
  connect=$(echo "$ports" | tr ',' '\n' | sed 's/^/127.0.0.1:/' | paste -sd, -)
  echo "== ZooKeeper $label at $connect" >&2
  "$BIN/failover-bench" floor --zk "$connect" --zk-label "$label" --session-timeout "$TIMEOUT" --count 50 --out "$RUN"
  /usr/bin/python3 Benchmarks/baselines/election_bench.py --floor 50 --zk "$connect" --zk-label "$label" \
    --session-timeout-ms "$TIMEOUT_MS" --out "$RUN"
  for impl in kazoo curator; do
    echo "== baseline $impl ($label), $BASE_ROUNDS rounds" >&2
    /usr/bin/python3 Benchmarks/baselines/election_bench.py --impl "$impl" --zk "$connect" --zk-label "$label" \
      --rounds "$BASE_ROUNDS" --session-timeout-ms "$TIMEOUT_MS" --java-cp "$JAVA_CP" --work "$WORK/baselines" --out "$RUN"
  done
  echo "== ours ($label): M=$AGENTS, $ROUNDS rounds of each kind" >&2
  "$BIN/failover-bench" run --zk-ports "$ports" --zk-label "$label" --bin "$BIN" --agents "$AGENTS" --rounds "$ROUNDS" \
    --session-timeout "$TIMEOUT" --agent-backoff "$BACKOFF" --agents-per-process "$PER_PROCESS" --max-tasks "$MAX_TASKS" \
    --work "$WORK/cluster" --out "$RUN"
  case "$kind" in
    ensemble) ZK_STOP_SIGNAL=KILL scripts/zk-ensemble.sh stop "$dir" 2>/dev/null ;;
    *) ZK_STOP_SIGNAL=KILL scripts/zk-standalone.sh stop "$dir" 2>/dev/null ;;
  esac
  rm -rf "$dir"/data "$dir"/zk*/data   # every registry write is in the transaction log: GBs at M=1000
done

LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
cat > "$WORK/meta.json" <<EOF
{"date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)", "git": "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)",
 "cores": $(nproc), "load_before": "$LOAD_BEFORE", "load_after": "$LOAD_AFTER",
 "session_timeout": "$TIMEOUT", "rounds": $ROUNDS, "baseline_rounds": $BASE_ROUNDS, "agents": "$AGENTS", "zk": "$ZKS",
 "agent_backoff": "$BACKOFF", "max_tasks": $MAX_TASKS, "agents_per_process": $PER_PROCESS,
 "note": $(printf '%s' "$NOTE" | /usr/bin/python3 -c 'import json,sys; print(json.dumps(sys.stdin.read()))')}
EOF
/usr/bin/python3 Benchmarks/Failover/report.py "$RUN" "$WORK/meta.json" Benchmarks/results "$PREFIX"
