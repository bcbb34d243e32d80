#!/usr/bin/python3
"""Summarises a scale-bench run (Benchmarks/scale-bench.sh): JSON, markdown and a plot.

    scale-report.py RUN.jsonl META.json OUT_DIR PREFIX     writes OUT_DIR/PREFIX.{json,md,png}
    scale-report.py --table RESULTS.json                    prints the README's table
    scale-report.py --readme README.md RESULTS.json         puts it between README's scale-table markers

Each record of RUN.jsonl is one failover of failover-bench (type failover), tagged with the
variant (agent-swarm flags) it ran under. Derived per failover: the time from the new leader's
election until every agent re-registered, until every agent's detector saw the new leader and
until the new leader led (registry recovered); the leader's resident memory above a standby's per
agent; ZooKeeper's requests above its idle rate. Medians and p95 over the failovers of one
(variant, agents, kind); ratios against the first (smallest) agent count of the same variant.
"""
import json
import math
import sys

GOAL_BACK_MS = 5000
GOAL_RSS_KIB_PER_AGENT = 20
KINDS = [("term", "SIGTERM"), ("kill", "SIGKILL")]


def pct(values, p):
    v = sorted(x for x in values if x is not None)
    if not v:
        return None
    rank = p * (len(v) - 1)
    lo = int(math.floor(rank))
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (rank - lo)


def derive(r):
    def diff(a, b):
        return r[a] - r[b] if r.get(a) is not None and r.get(b) is not None else None
    d = {
        "back_after_election_ms": diff("all_agents_ms", "elected_ms"),
        "detected_after_election_ms": diff("all_detected_ms", "elected_ms"),
        "recovery_ms": diff("leading_ms", "elected_ms"),
        "elected_ms": r.get("elected_ms"),
        "leader_cpu_ms": r.get("leader_cpu_ms"),
        "swarms_cpu_ms": r.get("swarms_cpu_ms"),
        "zk_cpu_ms": r.get("zk_cpu_ms"),
        "zk_requests_above_idle": r.get("zk_requests_above_idle"),
        "zk_idle_requests_per_s": r.get("zk_idle_requests_per_s"),
        "leader_rss_kib": r.get("leader_rss_kib"),
        "leader_fds_per_agent": r["leader_fds"] / r["agents"] if r.get("leader_fds") is not None and r.get("agents") else None,
        "tasks_lost": r.get("tasks_lost"),
    }
    # The baseline: a master before any agent (a standby's own memory grows with its warm copy of the
    # registry); records made before that field was sampled fall back to the standby.
    rss, m = r.get("leader_rss_kib"), r.get("agents")
    base = r.get("empty_master_rss_kib") or r.get("standby_rss_kib")
    d["rss_per_agent_kib"] = (rss - base) / m if rss is not None and base is not None and m else None
    d["standby_rss_kib"] = r.get("standby_rss_kib")
    d["listen_overflows"] = r.get("listen_overflows")
    return d


METRICS = ["back_after_election_ms", "detected_after_election_ms", "recovery_ms", "elected_ms", "leader_cpu_ms",
           "rss_per_agent_kib", "leader_rss_kib", "leader_fds_per_agent", "zk_requests_above_idle", "zk_idle_requests_per_s", "zk_cpu_ms",
           "swarms_cpu_ms", "tasks_lost", "standby_rss_kib", "listen_overflows"]


def summarise(records):
    groups = {}
    for r in records:
        if r.get("type") != "failover":
            continue
        groups.setdefault((r.get("variant", "default"), r["agents"], r["kind"]), []).append(r)
    rows = []
    for (variant, m, kind), rs in sorted(groups.items()):
        derived = [derive(r) for r in rs]
        row = {"variant": variant, "agents": m, "kind": kind, "n": len(rs),
               "incomplete": sum(1 for r in rs if r.get("incomplete") or r.get("all_agents_ms") is None)}
        for k in METRICS:
            vals = [d[k] for d in derived if d[k] is not None]
            row[k] = {"p50": pct(vals, 0.5), "p95": pct(vals, 0.95), "n": len(vals)} if vals else None
        rows.append(row)
    # Ratios against the smallest agent count of the same variant and kind (the baseline).
    for row in rows:
        base = min((r for r in rows if r["variant"] == row["variant"] and r["kind"] == row["kind"]), key=lambda r: r["agents"])
        b, x = base.get("back_after_election_ms"), row.get("back_after_election_ms")
        row["baseline_agents"] = base["agents"]
        row["back_vs_baseline_p50"] = x["p50"] / b["p50"] if b and x and b["p50"] else None
        e = row.get("elected_ms")
        row["back_vs_election_p50"] = x["p50"] / e["p50"] if x and e and e["p50"] else None
    return rows


def cell(s, key="p50", scale=1.0, digits=0):
    if not s or s.get(key) is None:
        return "–"
    return f"{s[key] * scale:.{digits}f}"


def table(doc):
    out = []
    w = out.append
    w("| variant | agents | failover | n | election → all agents back, p50 / p95 (s) | vs baseline (p50) | "
      "all detectors saw it (s, p50) | registry recovered (s, p50) | leader CPU (s, p50) | leader RSS per agent (KiB, p50) | "
      "leader descriptors per agent (p50) | ZooKeeper requests above idle (p50) | listen queue overflows (p50) | tasks lost |")
    w("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in doc["summary"]:
        back = r.get("back_after_election_ms")
        ratio = r.get("back_vs_baseline_p50")
        w(f"| {r['variant']} | {r['agents']} | {dict(KINDS).get(r['kind'], r['kind'])} | {r['n']}"
          f"{' (' + str(r['incomplete']) + ' incomplete)' if r['incomplete'] else ''} | "
          f"{cell(back, 'p50', 0.001, 2)} / {cell(back, 'p95', 0.001, 2)} | "
          f"{'–' if ratio is None else ('1 (baseline)' if r['agents'] == r['baseline_agents'] else f'{ratio:.2f}×')} | "
          f"{cell(r.get('detected_after_election_ms'), 'p50', 0.001, 2)} | {cell(r.get('recovery_ms'), 'p50', 0.001, 2)} | "
          f"{cell(r.get('leader_cpu_ms'), 'p50', 0.001, 2)} | {cell(r.get('rss_per_agent_kib'), 'p50', 1, 1)} | "
          f"{cell(r.get('leader_fds_per_agent'), 'p50', 1, 2)} | {cell(r.get('zk_requests_above_idle'))} | {cell(r.get('listen_overflows'))} | {cell(r.get('tasks_lost'), 'p50')} |")
    return "\n".join(out)


def plot(doc, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no plot", file=sys.stderr)
        return
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    variants = sorted({r["variant"] for r in doc["summary"]})
    for v in variants:
        for kind, label in KINDS:
            rows = sorted((r for r in doc["summary"] if r["variant"] == v and r["kind"] == kind and r.get("back_after_election_ms")),
                          key=lambda r: r["agents"])
            if not rows:
                continue
            xs = [r["agents"] for r in rows]
            a.errorbar(xs, [r["back_after_election_ms"]["p50"] / 1000 for r in rows],
                       yerr=[[0] * len(rows), [(r["back_after_election_ms"]["p95"] - r["back_after_election_ms"]["p50"]) / 1000 for r in rows]],
                       marker="o", capsize=3, label=f"{v}, {label}")
            rss = [r for r in rows if r.get("rss_per_agent_kib")]
            b.plot([r["agents"] for r in rss], [r["rss_per_agent_kib"]["p50"] for r in rss], marker="o", label=f"{v}, {label}")
    a.axhline(GOAL_BACK_MS / 1000, color="red", linestyle="--", label="goal 5 s")
    a.set_xlabel("agents")
    a.set_ylabel("new leader elected → all agents re-registered (s), p50 (bar: p95)")
    a.set_title("Failover at scale")
    a.legend(fontsize=7)
    b.axhline(GOAL_RSS_KIB_PER_AGENT, color="red", linestyle="--", label="goal 20 KiB")
    b.set_xlabel("agents")
    b.set_ylabel("leader RSS above a standby's, per agent (KiB)")
    b.set_title("Master memory per agent")
    b.legend(fontsize=7)
    fig.suptitle(f"{doc['meta'].get('cores')} cores, one standalone ZooKeeper; {doc['meta'].get('date')}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    if sys.argv[1] == "--table":
        print(table(json.load(open(sys.argv[2]))))
        return
    if sys.argv[1] == "--readme":
        readme, doc = sys.argv[2], json.load(open(sys.argv[3]))
        text = open(readme).read()
        begin, end = "<!-- scale-table:begin -->", "<!-- scale-table:end -->"
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        m = doc["meta"]
        intro = (f"Run of {m.get('date')} (git {m.get('git')}, release build): {m.get('cores')} cores, one standalone ZooKeeper, "
                 f"3 masters, session timeout {m.get('session_timeout')}, {m.get('agents_per_process')} agents per agent-swarm process, their work directories on {m.get('agents_fs', 'disk')}; "
                 f"{m.get('rounds')} failover(s) of each kind per row; load before/after {m.get('load_before')} / {m.get('load_after')}. {m.get('note', '')}")
        open(readme, "w").write(head + begin + "\n" + intro.strip() + "\n\n" + table(doc) + "\n" + end + tail)
        return
    run, meta_path, out_dir, prefix = sys.argv[1:5]
    records = [json.loads(l) for l in open(run) if l.strip()]
    meta = json.load(open(meta_path))
    doc = {"benchmark": "scale", "meta": meta, "summary": summarise(records),
           "errors": [r for r in records if r.get("type") == "error"], "records": records}
    json.dump(doc, open(f"{out_dir}/{prefix}.json", "w"), indent=1, sort_keys=True)
    md = (f"Scale benchmark ({meta.get('date')}, git {meta.get('git')}): {meta.get('cores')} cores, one standalone ZooKeeper, "
          f"3 masters, session timeout {meta.get('session_timeout')}, {meta.get('agents_per_process')} agents per agent-swarm process (work directories on {meta.get('agents_fs', 'disk')}), "
          f"tasks = min(M, {meta.get('max_tasks')}); load before/after {meta.get('load_before')} / {meta.get('load_after')}. "
          f"{meta.get('note', '')}\n\n" + table(doc) + "\n")
    open(f"{out_dir}/{prefix}.md", "w").write(md)
    plot(doc, f"{out_dir}/{prefix}.png")
    print(md)
    for e in doc["errors"]:
        print("error:", e, file=sys.stderr)


if __name__ == "__main__":
    main()
