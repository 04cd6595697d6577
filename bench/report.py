#!/usr/bin/env python3
"""Render bench/run.py's --json output as the Markdown tables in BENCHMARKS.md.

    python3 bench/report.py bench/results/full.json
"""
import json
import sys

TARGETS = {
    "1": "≥ 5,000 tasks/s; ≥ 10x less CPU per task than every peer; within 2x of the floor",
    "2": "≥ 5,000 tasks/s; ≥ 10x less CPU per task than every peer; within 2x of the floor",
    "3a": "< 100 MiB, < 5% of a core",
    "3b": "< 100 MiB, < 5% of a core",
    "4": "< 20 MiB, ready < 200 ms",
}
TITLES = {
    "1": "Scenario 1: activity tasks, trivial handler (echo)",
    "2": "Scenario 2: SQS callbacks, trivial handler (echo)",
    "3a": "Scenario 3: tasks held in flight, heartbeat every 10 s (activities)",
    "3b": "Scenario 3: tasks held in flight, heartbeat every 10 s and visibility extension (SQS)",
    "4": "Scenario 4: idle, 4 activity and 4 queue bindings",
}


def fmt(v, digits=0):
    return f"{v:,.{digits}f}"


def ratio_cell(name, ratio):
    """sfn-worker is the base; a peer shows its ratio when it has one."""
    if name == "sfn-worker":
        return "1"
    return f"{ratio:.2f}" if ratio else ""


def main(path):
    d = json.load(open(path))
    res, ratios = d["results"], d.get("ratios", {})
    print(f"Median of {d['runs']} runs; ratios are the peer's figure over sfn-worker's, taken pair by pair "
          f"in each run, then the median.\n")
    for key in ("1", "2"):
        if key not in res:
            continue
        print(f"### {TITLES[key]}\n\nTarget: {TARGETS[key]}.\n")
        print("| contender | tasks | tasks/s | CPU per task | × sfn-worker CPU | peak RSS |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, r in res[key].items():
            ratio = ratio_cell(name, ratios.get(key, {}).get(name))
            print(f"| {name} | {fmt(r['n'])} | {fmt(r['tasks_per_sec'])} | {fmt(r['cpu_us_per_task'])} µs | "
                  f"{ratio} | {fmt(r['peak_rss_mib'], 1)} MiB |")
        print()
    for key in ("3a", "3b"):
        if key not in res:
            continue
        print(f"### {TITLES[key]}\n\nTarget for sfn-worker at 10,000 held: {TARGETS[key]}.\n")
        print("| contender | held | steady CPU | keep-alive calls/s | CPU per call | × sfn-worker | peak RSS | per held task |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for name, r in res[key].items():
            ratio = ratio_cell(name, ratios.get(key, {}).get(name))
            print(f"| {name} | {fmt(r['in_flight'])} | {fmt(r['steady_cpu_pct'], 1)}% | {fmt(r['keepalives_per_sec'])} | "
                  f"{fmt(r['cpu_us_per_keepalive'])} µs | {ratio} | "
                  f"{fmt(r['peak_rss_mib'], 1)} MiB | {fmt(r['kib_per_task'], 1)} KiB |")
        print()
    if "4" in res:
        print(f"### {TITLES['4']}\n\nTarget: {TARGETS['4']}.\n")
        print("| contender | ready | RSS | CPU |")
        print("|---|---:|---:|---:|")
        for name, r in res["4"].items():
            print(f"| {name} | {fmt(r['ready_ms'])} ms | {fmt(r['rss_mib'], 1)} MiB | {fmt(r['idle_cpu_pct'], 2)}% |")
        print()
    m = d.get("machine", {})
    print(f"Machine: {m.get('cpus')} CPUs ({m.get('cpu')}), Linux {m.get('kernel')}.\n")
    print("| contender | settings |\n|---|---|")
    for name, s in d.get("settings", {}).items():
        print(f"| {name} | {s} |")
    print("\nVersions: " + ", ".join(f"{k} {v}" for k, v in d.get("versions", {}).items() if v) + ".")
    if d.get("not_run"):
        print("\nNot run: " + "; ".join(f"{k}: {v}" for k, v in d["not_run"].items()))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "bench/results/full.json")
