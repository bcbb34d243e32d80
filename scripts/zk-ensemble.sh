#!/usr/bin/env bash
# Start/stop a throw-away N-server (default 3) ZooKeeper 3.8 ensemble on loopback, without systemd.
#
#   zk-ensemble.sh start [DIR]     start all servers, wait until every one reports leader/follower,
#                                  print the connect string (last stdout line); a DIR that already
#                                  has a configuration is restarted with the same ports and data
#   zk-ensemble.sh stop  DIR       stop all servers (pids in DIR/zkN/zk.pid)
#   zk-ensemble.sh stop1 DIR N     stop only server N (e.g. to test leader loss / quorum loss)
#   zk-ensemble.sh start1 DIR N    (re)start only server N, wait until it is leader/follower again
#
# Layout: DIR/zk<N>/{zoo.cfg,data/myid,zk.pid,zk.log}, DIR/connect, DIR/ports
# Env: ZK_N (servers, default 3), ZK_TICK (ms, default 100), ZK_WAIT (s, default 60),
#      ZK_LOG_LEVEL (default warn), ZK_HEAP (default 256m), JAVA (default java),
#      ZK_STOP_SIGNAL (default TERM; KILL for instant teardown of throw-away data).
set -euo pipefail

# shellcheck source=zk-common.sh
. "$(dirname "${BASH_SOURCE[0]}")/zk-common.sh"



launch() {  # launch DIR N
  local d="$1/zk$2"
  (close_inherited_fds; exec nohup "$JAVA" -Xms32m -Xmx"${ZK_HEAP:-256m}" -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Dorg.slf4j.simpleLogger.defaultLogLevel="${ZK_LOG_LEVEL:-warn}" \
    -cp "$ZK_CP" org.apache.zookeeper.server.quorum.QuorumPeerMain "$d/zoo.cfg" \
    >> "$d/zk.log" 2>&1 < /dev/null) &
  echo $! > "$d/zk.pid"
}

configure() {  # configure DIR N TICK: ports, zoo.cfg and myid for every server, DIR/connect
  local dir="$1" n="$2" tick="$3" i
  : > "$dir/ports"
  local -a ports; mapfile -t ports < <(free_ports $((3 * n)))
  local servers="" connect=""
  for i in $(seq 1 "$n"); do
    local cp=${ports[$((3 * (i - 1)))]} qp=${ports[$((3 * (i - 1) + 1))]} ep=${ports[$((3 * (i - 1) + 2))]}
    servers+="server.$i=127.0.0.1:$qp:$ep"$'\n'       # quorum port : leader-election port
    connect+="${connect:+,}127.0.0.1:$cp"
    echo "$i $cp $qp $ep" >> "$dir/ports"
  done
  for i in $(seq 1 "$n"); do
    local d="$dir/zk$i" cp; cp=$(awk -v i="$i" '$1==i{print $2}' "$dir/ports")
    mkdir -p "$d/data"; echo "$i" > "$d/data/myid"
    zoo_cfg "$d/data" "$cp" "$tick" "$servers" > "$d/zoo.cfg"
  done
  echo "$connect" > "$dir/connect"
}

wait_ready() {  # wait_ready DIR N...: until every listed server is leader/follower; prints the modes
  local dir="$1" i; shift
  local deadline=$(( $(date +%s) + ${ZK_WAIT:-60} ))
  while :; do
    local ready=0 modes=""
    for i in "$@"; do
      local cp m; cp=$(awk -v i="$i" '$1==i{print $2}' "$dir/ports")
      m=$(four_lw "$cp" srvr | sed -n 's/^Mode: //p')
      modes+="zk$i=${m:-down} "
      case "$m" in leader|follower|standalone) ready=$((ready + 1)) ;; esac   # ZK_N=1 => standalone
      alive "$(cat "$dir/zk$i/zk.pid")" || { echo "zk$i died; log:" >&2; tail -20 "$dir/zk$i/zk.log" >&2; return 1; }
    done
    [ "$ready" -eq "$#" ] && { echo "$modes"; return 0; }
    if [ "$(date +%s)" -ge "$deadline" ]; then echo "not ready: $modes" >&2; return 1; fi
    sleep 0.05
  done
}

start() {
  local dir="${1:-}" n="${ZK_N:-3}" i
  [ -n "$dir" ] || dir="$(mktemp -d "${TMPDIR:-/tmp}/zk-ensemble.XXXXXX")"
  mkdir -p "$dir"; dir="$(cd "$dir" && pwd)"
  if [ -s "$dir/zk1/zk.pid" ] && alive "$(cat "$dir/zk1/zk.pid")"; then
    echo "already running in $dir" >&2; cat "$dir/connect"; return 0
  fi
  if [ -s "$dir/ports" ]; then n=$(wc -l < "$dir/ports"); else configure "$dir" "$n" "${ZK_TICK:-100}"; fi
  local t0 modes; t0=$(now_ms)
  for i in $(seq 1 "$n"); do launch "$dir" "$i"; done
  modes=$(wait_ready "$dir" $(seq 1 "$n")) || { stop "$dir"; exit 1; }
  echo "zookeeper ensemble ($n servers) dir=$dir ready in $(( $(now_ms) - t0 )) ms: $modes" >&2
  cat "$dir/connect"
}

start1() {  # start1 DIR N
  launch "${1:?DIR}" "${2:?N}"
  wait_ready "$1" "$2" > /dev/null
}


stop1() {
  local f="${1:?DIR}/zk${2:?N}/zk.pid"
  [ -s "$f" ] || return 0
  stop_pids "$(cat "$f")"; rm -f "$f"
}

stop() {  # all servers in parallel
  local dir="${1:?usage: $0 stop DIR}" f pids=()
  for f in "$dir"/zk*/zk.pid; do [ -s "$f" ] && pids+=("$(cat "$f")"); done
  [ "${#pids[@]}" -gt 0 ] && stop_pids "${pids[@]}"
  rm -f "$dir"/zk*/zk.pid
  echo "stopped zookeeper ensemble in $dir" >&2
}

case "${1:-}" in
  start)  start "${2:-}" ;;
  stop)   stop "${2:-}" ;;
  stop1)  stop1 "${2:-}" "${3:-}" ;;
  start1) start1 "${2:-}" "${3:-}" ;;
  *) echo "usage: $0 start [DIR] | stop DIR | stop1 DIR N | start1 DIR N" >&2; exit 2 ;;
esac
