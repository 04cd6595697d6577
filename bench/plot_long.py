#!/usr/bin/env python3
"""Draw scenario L's samples (bench/run.py --scenarios L --samples FILE):
RSS and open descriptors against tasks completed, to a PNG.

    python3 -m pip install matplotlib   # once
    python3 bench/plot_long.py /tmp/sfn-bench-long.json bench/results/long-rss.png
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(src, out):
    data = json.load(open(src))
    s = data["samples"]
    done = [x["completed"] / 1e6 for x in s]
    fig, rss_ax = plt.subplots(figsize=(9, 4.5), dpi=100)
    rss_ax.plot(done, [x["rss_kib"] / 1024 for x in s], color="tab:blue", label="RSS (MiB)")
    rss_ax.set_xlabel("tasks completed (millions)")
    rss_ax.set_ylabel("RSS (MiB)", color="tab:blue")
    rss_ax.set_ylim(bottom=0)
    fd_ax = rss_ax.twinx()
    fd_ax.plot(done, [x["fds"] for x in s], color="tab:orange", label="open descriptors")
    fd_ax.set_ylabel("open descriptors", color="tab:orange")
    fd_ax.set_ylim(bottom=0)
    tenth = data["n"] / 10 / 1e6
    rss_ax.axvline(tenth, color="grey", linestyle=":", linewidth=1)
    rss_ax.set_title(f"sfn-worker, {data['n']:,} tasks (half activities, half SQS), fake-aws "
                     f"{' '.join(data['faults'])}; one sample a second", fontsize=9)
    fig.tight_layout()
    fig.savefig(out)


if __name__ == "__main__":
    main(*sys.argv[1:3])
