# Shared by zk-standalone.sh and zk-ensemble.sh (sourced): the ZooKeeper command line, free ports,
# four-letter words, and stopping servers by pid.

ZK_CP="/usr/share/java/zookeeper.jar"            # its MANIFEST Class-Path pulls in all deps
[ -r /usr/share/java/slf4j-simple.jar ] && ZK_CP="$ZK_CP:/usr/share/java/slf4j-simple.jar"
JAVA="${JAVA:-java}"

# Ports come from below the kernel's ephemeral range (32768+): between our check and the server's
# bind, no outgoing connection can be handed the port (parallel tests make many).
free_ports() {  # free_ports COUNT -> COUNT distinct free loopback ports, one per line
  python3 - "$1" 2>/dev/null <<'EOF' && return
import random, socket, sys
socks = []
while len(socks) < int(sys.argv[1]):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", random.randint(10000, 32000))); socks.append(s)   # keep open => distinct
    except OSError:
        s.close()
for s in socks: print(s.getsockname()[1])
EOF
  local n=0 p seen=" "
  while [ "$n" -lt "$1" ]; do
    p=$((10000 + RANDOM % 22000))
    case "$seen" in *" $p "*) continue ;; esac
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && continue
    seen="$seen$p "; echo "$p"; n=$((n + 1))
  done
}

# Four-letter word over bash's /dev/tcp; short per-probe timeout (a probe that connects just as the
# port gets bound can hang until it times out).
four_lw() { timeout 0.3 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1 && printf '%s' '$2' >&3 && cat <&3" 2>/dev/null || true; }
now_ms() { date +%s%3N; }

# The server must not keep descriptors of whoever ran this script: a launcher that waits for EOF on a
# pipe or socket it handed us (Foundation's Process detects child exit that way) would wait for the
# server to exit. Called in the subshell that then execs java.
close_inherited_fds() {
  local fd
  for fd in /proc/$BASHPID/fd/*; do
    fd=${fd##*/}
    [ "$fd" -gt 2 ] && eval "exec $fd>&-" 2>/dev/null
  done
  return 0
}


# A killed server is an orphan (parent = init); a slow-reaping init leaves it as a zombie for a
# while, and `kill -0` succeeds on zombies, so test the process state instead.
# State letter from /proc/PID/stat (no procps needed): empty = gone, Z = zombie.
alive() { local st; st=$(sed -e 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1); [ -n "$st" ] && [ "$st" != Z ]; }

stop_pids() {  # signal all pids (ZK_STOP_SIGNAL: TERM ~0.35 s, KILL ~15 ms), wait <=10 s, then KILL
  local pid i alive
  for pid in "$@"; do kill -"${ZK_STOP_SIGNAL:-TERM}" "$pid" 2>/dev/null || true; done
  for i in $(seq 200); do
    alive=0; for pid in "$@"; do alive "$pid" && alive=1; done
    [ "$alive" -eq 0 ] && return 0; sleep 0.05
  done
  for pid in "$@"; do kill -9 "$pid" 2>/dev/null || true; done
}

# zoo_cfg DATADIR PORT TICK [SERVER_LINES]: the configuration of one server (tickTime 100 ms lets
# tests use sessions of 200 ms and up; forceSync off: throw-away data; no per-IP connection limit,
# as every local agent connects from 127.0.0.1 and the default 60 would refuse the 61st).
zoo_cfg() {
  cat <<EOF
tickTime=$3
initLimit=50
syncLimit=20
dataDir=$1
clientPort=$2
clientPortAddress=127.0.0.1
minSessionTimeout=$(($3 * 2))
maxSessionTimeout=60000
forceSync=no
admin.enableServer=false
4lw.commands.whitelist=*
maxClientCnxns=0
globalOutstandingLimit=10000
${4:-}
EOF
}
