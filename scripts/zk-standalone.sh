#!/usr/bin/env bash
# Start/stop a throw-away standalone ZooKeeper 3.8 (Debian package `zookeeper`) without systemd.
#
#   zk-standalone.sh start [DIR]   start, wait until it serves, print the connect string (last stdout line);
#                                  a DIR that already has a zoo.cfg is restarted with the same port and data
#   zk-standalone.sh stop  DIR     stop the server whose pid is in DIR/zk.pid (TERM, then KILL)
#
# DIR defaults to a fresh mktemp dir on start (printed on stderr) and must be given to stop.
# Files in DIR: zoo.cfg, data/, zk.pid, zk.log, connect (connect string).
# Env: ZK_PORT (default: a free loopback port), ZK_TICK (ms, default 100), ZK_WAIT (s, default 30),
#      ZK_LOG_LEVEL (slf4j-simple level, default warn), ZK_HEAP (default 256m), JAVA (default java),
#      ZK_STOP_SIGNAL (default TERM; KILL for instant teardown of throw-away data).
set -euo pipefail

# shellcheck source=zk-common.sh
. "$(dirname "${BASH_SOURCE[0]}")/zk-common.sh"



start() {
  local dir="${1:-}"
  [ -n "$dir" ] || dir="$(mktemp -d "${TMPDIR:-/tmp}/zk-standalone.XXXXXX")"
  mkdir -p "$dir/data"; dir="$(cd "$dir" && pwd)"
  if [ -s "$dir/zk.pid" ] && alive "$(cat "$dir/zk.pid")"; then
    echo "already running (pid $(cat "$dir/zk.pid"))" >&2; cat "$dir/connect"; return 0
  fi
  local port tick="${ZK_TICK:-100}"
  if [ -s "$dir/zoo.cfg" ]; then
    port=$(sed -n 's/^clientPort=//p' "$dir/zoo.cfg")
  else
    port="${ZK_PORT:-$(free_ports 1)}"
    zoo_cfg "$dir/data" "$port" "$tick" > "$dir/zoo.cfg"
  fi
  local t0; t0=$(now_ms)
  (close_inherited_fds; exec nohup "$JAVA" -Xms32m -Xmx"${ZK_HEAP:-256m}" -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Dorg.slf4j.simpleLogger.defaultLogLevel="${ZK_LOG_LEVEL:-warn}" \
    -cp "$ZK_CP" org.apache.zookeeper.server.quorum.QuorumPeerMain "$dir/zoo.cfg" \
    >> "$dir/zk.log" 2>&1 < /dev/null) &
  local pid=$!
  echo "$pid" > "$dir/zk.pid"
  local deadline=$(( $(date +%s) + ${ZK_WAIT:-30} ))
  until four_lw "$port" srvr | grep -q '^Mode: standalone'; do
    if ! alive "$pid"; then echo "zookeeper died; log:" >&2; tail -20 "$dir/zk.log" >&2; exit 1; fi
    if [ "$(date +%s)" -ge "$deadline" ]; then echo "zookeeper not ready after ${ZK_WAIT:-30}s" >&2; kill "$pid"; exit 1; fi
    sleep 0.05
  done
  echo "127.0.0.1:$port" > "$dir/connect"
  echo "zookeeper standalone pid=$pid dir=$dir ready in $(( $(now_ms) - t0 )) ms" >&2
  echo "127.0.0.1:$port"
}


stop() {
  local dir="${1:?usage: $0 stop DIR}"
  [ -s "$dir/zk.pid" ] || { echo "no $dir/zk.pid" >&2; return 0; }
  stop_pids "$(cat "$dir/zk.pid")"
  rm -f "$dir/zk.pid"
  echo "stopped zookeeper in $dir" >&2
}

case "${1:-}" in
  start) start "${2:-}" ;;
  stop)  stop "${2:-}" ;;
  *) echo "usage: $0 start [DIR] | stop DIR" >&2; exit 2 ;;
esac
