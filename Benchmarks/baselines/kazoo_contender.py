#!/usr/bin/python3
"""One contender of kazoo's Election recipe (a baseline of Benchmarks/failover-bench.sh).

    kazoo_contender.py ZK_CONNECT PATH ID SESSION_TIMEOUT_S

Prints `<epoch_ms> ready ID` once its session is up and it has entered the election, and
`<epoch_ms> leader ID` when the recipe calls it as the leader. SIGTERM: the graceful path, the
client is stopped and closed (its lock znode is deleted at once), then it exits. SIGKILL: the
session expires on the server after the session timeout, as for our masters.
"""
import logging
import signal
import sys
import threading
import time

from kazoo.client import KazooClient


def now_ms():
    return int(time.time() * 1000)


def say(text):
    sys.stdout.write(f"{now_ms()} {text}\n")
    sys.stdout.flush()


def main():
    connect, path, ident, timeout = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    logging.basicConfig(level=logging.CRITICAL)
    # Blocked in every thread (kazoo's start after this), taken synchronously by sigwait below.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    zk = KazooClient(hosts=connect, timeout=timeout)
    zk.start(timeout=30)
    zk.ensure_path(path)
    election = zk.Election(path, ident)
    forever = threading.Event()

    def lead():
        say(f"leader {ident}")
        forever.wait()

    threading.Thread(target=election.run, args=(lead,), daemon=True).start()
    # Entered once our lock znode exists (the recipe creates it before waiting on its predecessor).
    deadline = time.time() + 30
    while time.time() < deadline and ident not in election.contenders():
        time.sleep(0.01)
    say(f"ready {ident}")

    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    zk.stop()
    zk.close()
    say(f"stopped {ident}")


if __name__ == "__main__":
    main()
