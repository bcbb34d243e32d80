#!/usr/bin/python3
"""Summarises a failover-bench run: markdown tables, JSON and plots.

    report.py RUN.jsonl META.json OUT_DIR [PREFIX]

RUN.jsonl holds the records of failover-bench (type failover/error), election_bench.py (type
baseline) and both floors (type floor). Writes OUT_DIR/PREFIX.md, PREFIX.json,
PREFIX-vs-agents.png and PREFIX-cdf.png (matplotlib); PREFIX defaults to
failover-latest.
"""
import json
import math
import os
import sys

METRICS = [
    ("elected_ms", "new leader elected"),
    ("first_agent_ms", "first agent re-registered"),
    ("all_agents_ms", "all agents re-registered"),
    ("framework_ms", "framework re-registered"),
    ("first_offer_ms", "first offer"),
]
KINDS = [("term", "SIGTERM (graceful)"), ("kill", "SIGKILL"), ("cut", "cut from ZooKeeper")]


def pct(values, p):
    """Linear interpolation between closest ranks (numpy's default)."""
    v = sorted(values)
    if not v:
        return None
    if p >= 1:
        return v[-1]
    rank = p * (len(v) - 1)
    lo = int(math.floor(rank))
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (rank - lo)


def summary(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"n": len(values), "p50": pct(values, 0.5), "p90": pct(values, 0.9), "p99": pct(values, 0.99), "max": max(values)}


def fmt(s, scale=1.0, digits=0):
    if not s:
        return "–"
    f = lambda x: f"{x * scale:.{digits}f}"
    return f"{f(s['p50'])} / {f(s['p90'])} / {f(s['p99'])} / {f(s['max'])}"


def ratio(a, b):
    return a / b if a is not None and b else None


def main():
    run, meta_path, out_dir = sys.argv[1], sys.argv[2], sys.argv[3]
    prefix = sys.argv[4] if len(sys.argv) > 4 else "failover-latest"
    records = [json.loads(l) for l in open(run) if l.strip()]
    meta = json.load(open(meta_path))
    failovers = [r for r in records if r.get("type") == "failover"]
    baselines = [r for r in records if r.get("type") == "baseline"]
    floors = [r for r in records if r.get("type") == "floor"]
    errors = [r for r in records if r.get("type") == "error"]
    zks = [z for z in ("standalone", "ensemble3") if any(r["zk"] == z for r in records)] + \
        sorted({r["zk"] for r in records if r.get("zk") not in ("standalone", "ensemble3")})
    ms = sorted({r["agents"] for r in failovers})

    doc = {"benchmark": "failover", "meta": meta, "summary": [], "baselines": [], "floor": [], "ratios": [], "errors": errors,
           "records": records}
    lines = []
    w = lines.append
    w(f"Session timeout {meta.get('session_timeout')} for every process (masters, agents, framework, baselines); "
      f"{meta.get('rounds')} failovers of each kind per row; agents' registration backoff factor {meta.get('agent_backoff')}, "
      f"framework's 2 s (SchedulerDriver default), allocation interval 1 s (master default); tasks = min(M, {meta.get('max_tasks')}), one per agent.")
    w(f"Machine: {meta.get('cores')} cores, load average before/after the run {meta.get('load_before')} / {meta.get('load_after')}; {meta.get('date')}; {meta.get('note', '')}".rstrip("; "))
    w("")
    w("Times in ms from the fault (signal sent, or proxy blackholed) to the event; each cell p50 / p90 / p99 / max "
      "(with n ≤ 10 samples p99 is close to the max).")
    w("")
    header = "| ZooKeeper | failover | M | " + " | ".join(name for _, name in METRICS) + " | tasks lost | old leader gone |"
    w(header)
    w("|" + "---|" * (header.count("|") - 1))
    for zk in zks:
        for kind, kind_name in KINDS:
            for m in ms:
                rows = [r for r in failovers if r["zk"] == zk and r["kind"] == kind and r["agents"] == m]
                if not rows:
                    continue
                cells = []
                entry = {"zk": zk, "kind": kind, "agents": m, "n": len(rows)}
                for key, _ in METRICS:
                    s = summary([r.get(key) for r in rows])
                    entry[key] = s
                    missing = sum(1 for r in rows if r.get(key) is None)
                    cells.append(fmt(s) + (f" ({missing} missing)" if missing else ""))
                for key in ("znode_gone_ms", "leading_ms"):
                    entry[key] = summary([r.get(key) for r in rows])
                loads = [r["load1"] for r in rows if r.get("load1", -1) >= 0]
                entry["load1_mean"] = sum(loads) / len(loads) if loads else None
                lost = sum(r.get("tasks_lost", 0) for r in rows)
                alive_short = sum(1 for r in rows if r.get("tasks_alive", 0) < r.get("tasks_expected", 0))
                entry["tasks_lost"] = lost
                entry["rounds_with_dead_tasks"] = alive_short
                gone = summary([r.get("old_leader_exit_ms") for r in rows])
                entry["old_leader_exit_ms"] = gone
                doc["summary"].append(entry)
                lost_cell = f"{lost}" + (f" ({alive_short} rounds with a dead task)" if alive_short else "")
                w(f"| {zk} | {kind_name} | {m} | " + " | ".join(cells) + f" | {lost_cell} | {fmt(gone)} |")
    w("")
    w("Where the time goes (p50, ms after the fault): the old leader's znode vanishes from ZooKeeper → a detector sees the new "
      "leader → the new leader has recovered (its epoch is in the registry) → agents, framework, offers. Load = mean 1-minute "
      "load average of the machine at the faults (2 cores).")
    w("")
    w("| ZooKeeper | failover | M | leader znode gone | new leader elected | new leader leading | first agent | all agents | framework | first offer | load |")
    w("|---|---|---|---|---|---|---|---|---|---|---|")
    for zk in zks:
        for kind, kind_name in KINDS:
            for m in ms:
                rows = [r for r in failovers if r["zk"] == zk and r["kind"] == kind and r["agents"] == m]
                if not rows:
                    continue
                cells = []
                for key in ("znode_gone_ms", "elected_ms", "leading_ms", "first_agent_ms", "all_agents_ms", "framework_ms", "first_offer_ms"):
                    s = summary([r.get(key) for r in rows])
                    cells.append(f"{s['p50']:.0f}" if s else "–")
                loads = [r["load1"] for r in rows if r.get("load1", -1) >= 0]
                load = f"{sum(loads) / len(loads):.1f}" if loads else "–"
                w(f"| {zk} | {kind_name} | {m} | " + " | ".join(cells) + f" | {load} |")
    w("")

    # Baselines: election only. Ours at the smallest M (the recipes run 3 contenders and nothing else) and over all M.
    m0 = ms[0] if ms else None
    w(f"New leader elected, ours vs the ZooKeeper recipes (same ZooKeeper, same session timeout, 3 contenders each; "
      f"ratios use ours at M={m0}, where the machine carries little else, as for the recipes):")
    w("")
    w(f"| ZooKeeper | failover | ours, M={m0}: p50 / p90 (n) | ours, all M: p50 / p90 (n) | kazoo Election: p50 / p90 (n) | Curator LeaderLatch: p50 / p90 (n) | ours / kazoo (p50) | ours / Curator (p50) |")
    w("|---|---|---|---|---|---|---|---|")
    two = lambda s: f"{s['p50']:.0f} / {s['p90']:.0f} ({s['n']})" if s else "–"
    r2 = lambda x: f"{x:.2f}×" if x is not None else "–"
    for zk in zks:
        for kind, kind_name in KINDS[:2]:
            ours0 = summary([r.get("elected_ms") for r in failovers if r["zk"] == zk and r["kind"] == kind and r["agents"] == m0])
            ours = summary([r.get("elected_ms") for r in failovers if r["zk"] == zk and r["kind"] == kind])
            kz = summary([r.get("elected_ms") for r in baselines if r["zk"] == zk and r["kind"] == kind and r["impl"] == "kazoo"])
            cu = summary([r.get("elected_ms") for r in baselines if r["zk"] == zk and r["kind"] == kind and r["impl"] == "curator"])
            if not (ours or kz or cu):
                continue
            rk = ratio(ours0 and ours0["p50"], kz and kz["p50"])
            rc = ratio(ours0 and ours0["p50"], cu and cu["p50"])
            doc["baselines"].append({"zk": zk, "kind": kind, "ours_smallest_m": ours0, "smallest_m": m0, "ours_all_m": ours, "kazoo": kz,
                                     "curator": cu, "ours_over_kazoo": rk, "ours_over_curator": rc})
            w(f"| {zk} | {kind_name} | {two(ours0)} | {two(ours)} | {two(kz)} | {two(cu)} | {r2(rk)} | {r2(rc)} |")
    w("")

    w("ZooKeeper floor: one ephemeral znode deleted by one session → the exists-watch of another session fires, measured with "
      "our ZooKeeper module and with kazoo (`close`: the znode goes with its session's close). Our graceful failover: leader "
      f"SIGTERM → its znode is gone (it deletes it on SIGTERM) → a detector has listed the group and read the new leader's znode; at M={m0}:")
    w("")
    w("| ZooKeeper | floor delete→watch, our module: p50 / p90 (ms) | same, kazoo: p50 / p90 (ms) | close→watch, our module: p50 (ms) | "
      "our SIGTERM: leader znode gone, p50 (ms) | our SIGTERM: new leader elected, p50 (ms) | elected / floor (our module's, kazoo's) |")
    w("|---|---|---|---|---|---|---|")
    for zk in zks:
        get = lambda impl, var: next((summary(f["samples_us"]) for f in floors if f["zk"] == zk and f["impl"] == impl and f["variant"] == var), None)
        d, c, k = get("swift-zookeeper", "delete"), get("swift-zookeeper", "close"), get("kazoo", "delete")
        rows = [r for r in failovers if r["zk"] == zk and r["kind"] == "term" and r["agents"] == m0]
        ours = summary([r.get("elected_ms") for r in rows])
        gone = summary([r.get("znode_gone_ms") for r in rows])
        rf = ratio(ours and ours["p50"], d and d["p50"] / 1000)
        rk = ratio(ours and ours["p50"], k and k["p50"] / 1000)
        doc["floor"].append({"zk": zk, "delete_us": d, "close_us": c, "kazoo_delete_us": k, "ours_term_elected_ms": ours,
                             "ours_term_znode_gone_ms": gone, "agents": m0, "ours_over_floor": rf, "ours_over_kazoo_floor": rk})
        ms2 = lambda s: f"{s['p50'] / 1000:.2f} / {s['p90'] / 1000:.2f}" if s else "–"
        ms1 = lambda s: f"{s['p50'] / 1000:.2f}" if s else "–"
        p50 = lambda s: f"{s['p50']:.0f}" if s else "–"
        rr = f"{rf:.1f}×, {rk:.1f}×" if rf and rk else "–"
        w(f"| {zk} | {ms2(d)} | {ms2(k)} | {ms1(c)} | {p50(gone)} | {p50(ours)} | {rr} |")
    if errors:
        w("")
        w("Errors: " + "; ".join(f"{e['zk']} M={e['agents']}: {e['error']}" for e in errors))
    w("")

    os.makedirs(out_dir, exist_ok=True)
    md = "\n".join(lines)
    with open(os.path.join(out_dir, prefix + ".md"), "w") as f:
        f.write(md)
    with open(os.path.join(out_dir, prefix + ".json"), "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
    plots = plot(doc, failovers, baselines, zks, ms, out_dir, prefix)
    print(md)
    print("\n".join(f"wrote {p}" for p in [os.path.join(out_dir, prefix + e) for e in (".md", ".json")] + plots))


def plot(doc, failovers, baselines, zks, ms, out_dir, prefix):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing (apt-get install python3-matplotlib): no plots", file=sys.stderr)
        return []
    paths = []
    colors = {"elected_ms": "C0", "first_agent_ms": "C1", "all_agents_ms": "C2", "framework_ms": "C3", "first_offer_ms": "C4"}
    styles = {"standalone": "-", "ensemble3": "--"}
    fig, axes = plt.subplots(1, 3, figsize=(16, 5), sharey=True)
    for ax, (kind, kind_name) in zip(axes, KINDS):
        for zk in zks:
            for key, name in METRICS:
                xs, p50, p90 = [], [], []
                for m in ms:
                    s = summary([r.get(key) for r in failovers if r["zk"] == zk and r["kind"] == kind and r["agents"] == m])
                    if s:
                        xs.append(m)
                        p50.append(s["p50"])
                        p90.append(s["p90"])
                if xs:
                    ax.plot(xs, p50, styles.get(zk, ":"), marker="o", color=colors[key], label=f"{name} ({zk})")
                    ax.fill_between(xs, p50, p90, color=colors[key], alpha=0.08)
        for impl, color in (("kazoo", "grey"), ("curator", "black")):
            s = summary([r.get("elected_ms") for r in baselines if r["kind"] == kind and r["impl"] == impl])
            if s:
                ax.axhline(s["p50"], color=color, linestyle=":", linewidth=1, label=f"{impl} election p50")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"leader {kind_name}")
        ax.set_xlabel("agents (M)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("ms after the fault (p50; band to p90)")
    handles, labels = axes[-1].get_legend_handles_labels()
    for ax in axes[:-1]:
        for h, l in zip(*ax.get_legend_handles_labels()):
            if l not in labels:
                handles.append(h)
                labels.append(l)
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8)
    fig.suptitle(f"Failover latency vs number of agents (session timeout {doc['meta'].get('session_timeout')})")
    fig.tight_layout(rect=(0, 0.16, 1, 0.95))
    p = os.path.join(out_dir, prefix + "-vs-agents.png")
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths.append(p)

    fig, axes = plt.subplots(1, 2, figsize=(14, 5))
    ax = axes[0]
    for i, (kind, kind_name) in enumerate(KINDS):
        v = sorted(r["elected_ms"] for r in failovers if r["kind"] == kind and r.get("elected_ms") is not None)
        if v:
            ax.step(v, [(j + 1) / len(v) for j in range(len(v))], where="post", color=f"C{i}", label=f"ours (all M), {kind_name}")
        for impl, ls in (("kazoo", "--"), ("curator", ":")):
            b = sorted(r["elected_ms"] for r in baselines if r["kind"] == kind and r["impl"] == impl and r.get("elected_ms") is not None)
            if b:
                ax.step(b, [(j + 1) / len(b) for j in range(len(b))], where="post", color=f"C{i}", linestyle=ls, label=f"{impl}, {kind_name}")
    ax.set_xscale("symlog", linthresh=10)
    ax.set_xlabel("ms from the fault to the new leader (all M, both ZooKeeper setups)")
    ax.set_ylabel("fraction of failovers")
    ax.set_title("CDF: new leader elected, ours vs kazoo and Curator")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    ax = axes[1]
    for i, m in enumerate(ms):
        v = sorted(r["all_agents_ms"] for r in failovers if r["agents"] == m and r.get("all_agents_ms") is not None)
        if v:
            ax.step(v, [(j + 1) / len(v) for j in range(len(v))], where="post", color=f"C{i}", label=f"all {m} agents re-registered")
        f = sorted(r["first_offer_ms"] for r in failovers if r["agents"] == m and r.get("first_offer_ms") is not None)
        if f:
            ax.step(f, [(j + 1) / len(f) for j in range(len(f))], where="post", color=f"C{i}", linestyle="--", label=f"first offer (M={m})")
    ax.set_xscale("log")
    ax.set_xlabel("ms from the fault (all kinds, both ZooKeeper setups)")
    ax.set_title("CDF: all agents re-registered / first offer")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    p = os.path.join(out_dir, prefix + "-cdf.png")
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths.append(p)
    return paths


if __name__ == "__main__":
    main()
