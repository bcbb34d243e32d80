#!/usr/bin/python3
"""Baseline election failovers: kazoo's Election recipe or Curator's LeaderLatch.

Three contender processes (kazoo_contender.py or CuratorContender.java) join one election on the
given ZooKeeper; then, R times for each kind, the leading process is sent SIGTERM (graceful: the
client closes, its znode goes at once) or SIGKILL (its session expires on the server after the
session timeout), and the time from the signal to the next contender's "leader" line is recorded
(both stamped with the wall clock of this machine, in ms). The deposed contender is restarted as a
standby before the next round, as the Swift harness does with its masters.

    election_bench.py --impl kazoo|curator --zk HOST:PORT[,...] --zk-label L --rounds R
                      --session-timeout-ms 2000 --out results.jsonl [--java-cp CP] [--work DIR]
    election_bench.py --floor N --zk ... --zk-label L --out results.jsonl     (kazoo delete->watch floor)
"""
import argparse
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def now_ms():
    return int(time.time() * 1000)


class Contender:
    def __init__(self, args, ident, path, log):
        self.ident = ident
        self.events = []  # (ms, kind, ident)
        self.lock = threading.Lock()
        if args.impl == "kazoo":
            cmd = ["/usr/bin/python3", os.path.join(HERE, "kazoo_contender.py"), args.zk, path, ident,
                   str(args.session_timeout_ms / 1000)]
        else:
            cmd = ["java", "-Xms32m", "-Xmx128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-cp", args.java_cp,
                   "CuratorContender", args.zk, path, ident, str(args.session_timeout_ms)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, bufsize=1)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            parts = line.split()
            if len(parts) >= 3 and parts[0].isdigit():
                with self.lock:
                    self.events.append((int(parts[0]), parts[1], parts[2]))

    def seen(self, kind, since=0):
        with self.lock:
            return [e for e in self.events if e[1] == kind and e[0] >= since]

    def wait(self, kind, timeout, since=0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            hit = self.seen(kind, since)
            if hit:
                return hit[0]
            if self.proc.poll() is not None:
                return None
            time.sleep(0.005)
        return None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def election(args, out):
    path = f"/failover-baseline/{args.impl}-{args.zk_label}-{random.randrange(1 << 30)}"
    os.makedirs(args.work, exist_ok=True)
    log = open(os.path.join(args.work, f"{args.impl}-{args.zk_label}.log"), "a")
    serial = [0]

    def spawn():
        serial[0] += 1
        c = Contender(args, f"c{serial[0]}", path, log)
        if not c.wait("ready", 60):
            raise SystemExit(f"{args.impl} contender {c.ident} did not get ready")
        return c

    contenders = [spawn() for _ in range(3)]
    try:
        def leader():
            best = None
            for c in contenders:
                if c.proc.poll() is None:
                    for e in c.seen("leader"):
                        if best is None or e[0] > best[1][0]:
                            best = (c, e)
            return best[0] if best else None

        deadline = time.time() + 30
        while leader() is None and time.time() < deadline:
            time.sleep(0.01)
        for rnd in range(1, args.rounds + 1):
            for kind, sig in (("term", signal.SIGTERM), ("kill", signal.SIGKILL)):
                victim = leader()
                if victim is None:
                    raise SystemExit(f"{args.impl}: no leader")
                others = [c for c in contenders if c is not victim]
                t0 = now_ms()
                victim.proc.send_signal(sig)
                hit, deadline = None, time.time() + args.session_timeout_ms / 1000 * 5 + 20
                while hit is None and time.time() < deadline:
                    for c in others:
                        got = c.seen("leader", t0)
                        if got:
                            hit = got[0]
                    time.sleep(0.002)
                rec = {"type": "baseline", "impl": args.impl, "zk": args.zk_label, "kind": kind, "round": rnd,
                       "session_timeout_ms": args.session_timeout_ms, "elected_ms": (hit[0] - t0) if hit else None}
                out.write(json.dumps(rec, sort_keys=True) + "\n")
                out.flush()
                print(f"  {args.impl} {kind} #{rnd}: new leader notified after {rec['elected_ms']} ms", file=sys.stderr)
                victim.proc.wait(timeout=30)
                contenders.remove(victim)
                contenders.append(spawn())
                time.sleep(args.settle)
    finally:
        for c in contenders:
            c.stop()


def floor(args, out):
    from kazoo.client import KazooClient
    a = KazooClient(hosts=args.zk, timeout=args.session_timeout_ms / 1000)
    b = KazooClient(hosts=args.zk, timeout=args.session_timeout_ms / 1000)
    a.start(30)
    b.start(30)
    path = f"/failover-floor-kazoo-{random.randrange(1 << 30)}"
    a.ensure_path(path)
    samples = []
    for i in range(-10, args.floor):  # the first 10 warm up the server's JIT and are not counted
        node = f"{path}/n{i + 10}"
        a.create(node, ephemeral=True)
        fired = threading.Event()
        at = [0.0]

        def watch(_event, at=at, fired=fired):
            at[0] = time.perf_counter()
            fired.set()

        b.exists(node, watch=watch)
        t0 = time.perf_counter()
        a.delete(node)
        fired.wait(10)
        if i >= 0:
            samples.append(int((at[0] - t0) * 1e6))
    a.delete(path, recursive=True)
    a.stop()
    b.stop()
    samples.sort()
    out.write(json.dumps({"type": "floor", "impl": "kazoo", "zk": args.zk_label, "variant": "delete", "samples_us": samples}) + "\n")
    print(f"floor (kazoo) {args.zk_label}: p50 {samples[len(samples) // 2] / 1000:.2f} ms (n={len(samples)})", file=sys.stderr)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--impl", choices=["kazoo", "curator"], default="kazoo")
    p.add_argument("--zk", required=True)
    p.add_argument("--zk-label", default="standalone")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--session-timeout-ms", type=int, default=2000)
    p.add_argument("--settle", type=float, default=1.0)
    p.add_argument("--java-cp", default="")
    p.add_argument("--work", default="/tmp/election-bench")
    p.add_argument("--floor", type=int, default=0)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    with open(args.out, "a") as out:
        if args.floor:
            floor(args, out)
        else:
            election(args, out)


if __name__ == "__main__":
    main()
