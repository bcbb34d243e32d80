#!/usr/bin/env python3
"""The README's bus benchmark table, from Benchmarks/results/bus-latest.json (or the file given).

    Benchmarks/bus-table.py [RESULTS.json] [--readme README.md]

Prints the markdown table; with --readme, replaces the table between the
`<!-- bus-table:begin -->` and `<!-- bus-table:end -->` markers of that file.
"""
import json
import re
import sys


def rate(x):
    return f"{x / 1e6:.2f} M" if x >= 1e6 else f"{x / 1e3:.1f} k"


def costs(per, side):
    c = per.get(side) if per else None
    if not c:
        return "–"
    allocs = c.get("allocations")
    allocs = "n/a" if allocs is None else f"{allocs:.2f}"
    return f"{c['cpu_us']:.2f} µs · {allocs} allocs · {c['context_switches']:.3f} csw"


def table(doc):
    rows = {r["metric"]: r for r in doc["rows"]}
    setup = doc.get("setup", {})
    out = [
        f"Run of {doc['date']}: release build, loopback, two buses in one process on {setup.get('cores', '?')} cores "
        f"(senders and consumers on the bus's {setup.get('placement', '?')}); each figure is the median of "
        f"{setup.get('repeats', '?')} runs of {setup.get('seconds', '?')} s after {setup.get('warmup', '?')} s of warm-up, "
        "the floors measured in the same run. Costs are per message (per round trip for latency) for the whole "
        "process: CPU time (getrusage), malloc calls, context switches."
        + (f" Load average before/after: {setup['load_average'][0]:.1f} / {setup['load_average'][1]:.1f} on a shared machine."
           if setup.get("load_average") else ""),
        "",
        "| metric | ours | per-frame C floor | ours / floor | batched C floor | ours / batched | costs: ours | costs: per-frame floor | costs: batched floor |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in ["throughput 100 B", "throughput 64 KiB"]:
        r = rows.get(name)
        if not r:
            continue
        per = r.get("per_message", {})
        fb = r.get("floor_batched")
        out.append(
            f"| {name} | {rate(r['ours'])} msg/s | {rate(r['floor'])} msg/s | {r['ratio']:.2f} | "
            + (f"{rate(fb)} msg/s | {r['ratio_batched']:.3f} | " if fb else "– | – | ")
            + f"{costs(per, 'ours')} | {costs(per, 'floor')} | {costs(per, 'floor_batched')} |"
        )
    p = [rows.get(f"round trip 100 B {k}") for k in ["p50", "p90", "p99"]]
    if all(p):
        per = p[0].get("per_round_trip", {})
        out.append(
            "| round trip 100 B, p50 / p90 / p99 | "
            + " / ".join(f"{r['ours']:.0f}" for r in p) + " µs | "
            + " / ".join(f"{r['floor']:.0f}" for r in p) + " µs | "
            + " / ".join(f"{r['ratio']:.2f}" for r in p) + " | – | – | "
            + f"{costs(per, 'ours')} | {costs(per, 'floor')} | – |"
        )
    tls = [rows.get(n) for n in ["TLS throughput 100 B", "TLS throughput 64 KiB"]]
    tp = [rows.get(f"TLS round trip 100 B {k}") for k in ["p50", "p90", "p99"]]
    if any(tls) or all(tp):
        out += [
            "",
            "Mutual TLS (swift-nio-ssl, TLS 1.3, client certificates verified) beside the plaintext bus measured right after it in the same run:",
            "",
            "| metric | TLS | plaintext bus | TLS / plaintext | costs: TLS | costs: plaintext |",
            "|---|---|---|---|---|---|",
        ]
        for r in tls:
            if r:
                per = r.get("per_message", {})
                out.append(f"| {r['metric']} | {rate(r['ours'])} msg/s | {rate(r['floor'])} msg/s | {r['ratio']:.2f} | {costs(per, 'ours')} | {costs(per, 'floor')} |")
        if all(tp):
            per = tp[0].get("per_round_trip", {})
            out.append(
                "| TLS round trip 100 B, p50 / p90 / p99 | " + " / ".join(f"{r['ours']:.0f}" for r in tp) + " µs | "
                + " / ".join(f"{r['floor']:.0f}" for r in tp) + " µs | " + " / ".join(f"{r['ratio']:.2f}" for r in tp) + " | "
                + f"{costs(per, 'ours')} | {costs(per, 'floor')} |"
            )
    return "\n".join(out)


def main(argv):
    path, readme = "Benchmarks/results/bus-latest.json", None
    args = list(argv)
    while args:
        a = args.pop(0)
        if a == "--readme":
            readme = args.pop(0)
        else:
            path = a
    with open(path) as f:
        text = table(json.load(f))
    if readme is None:
        print(text)
        return 0
    with open(readme) as f:
        doc = f.read()
    pattern = re.compile(r"(<!-- bus-table:begin -->\n).*?(<!-- bus-table:end -->)", re.S)
    if not pattern.search(doc):
        print(f"{readme}: no bus-table markers", file=sys.stderr)
        return 1
    with open(readme, "w") as f:
        f.write(pattern.sub(lambda m: m.group(1) + text + "\n" + m.group(2), doc))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
