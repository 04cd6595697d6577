#!/usr/bin/env python3
"""Benchmarks for sfn-worker against bench's fake AWS backend (fake-aws).

    bench/run.py                 the full run (release builds); prints the table
    bench/run.py --short         CI mode: small numbers, debug builds; checks that
                                 every task completes exactly once, not speed
    bench/run.py --runs 3        repeat each scenario and report medians

Scenarios (issue 6): 1 activity tasks, trivial handler; 2 SQS callbacks,
trivial handler; 3 many tasks in flight with heartbeats; 4 an idle worker
with 4 activity and 4 queue bindings. Each measurement is taken from /proc
for the worker process: CPU time (user + sys), peak RSS (VmHWM).
Peers (other workers) are not wired in yet: see BENCHMARKS.md.
"""
import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLK_TCK = os.sysconf("SC_CLK_TCK")
ACCOUNT = "123456789012"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, timeout=2):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read().decode()


def wait_until(pred, timeout, what, step=0.01):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(step)
    raise SystemExit(f"timed out after {timeout} s waiting for {what}")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[11], fields[12]: utime, stime (the 14th and 15th of the full line)
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def memory_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def build(profile):
    args = ["cargo", "build", "--quiet", "--locked", "-p", "sfn-worker", "-p", "sfn-worker-bench"]
    if profile == "release":
        args.append("--release")
    subprocess.run(args, cwd=ROOT, check=True)
    meta = json.loads(subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps"],
                                     cwd=ROOT, check=True, capture_output=True).stdout)
    target = os.path.join(meta["target_directory"], profile)
    return os.path.join(target, "sfn-worker"), os.path.join(target, "fake-aws")


class Fake:
    def __init__(self, binary, activity_tasks=0, messages=0, poll_hold_ms=500):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [binary, "--listen", f"127.0.0.1:{self.port}", "--activity-tasks", str(activity_tasks),
             "--messages", str(messages), "--poll-hold-ms", str(poll_hold_ms)],
            stderr=subprocess.DEVNULL)
        wait_until(self.up, 10, "fake-aws")

    def up(self):
        try:
            return get(self.url + "/healthz")[0] == 200
        except OSError:
            return False

    def stats(self):
        return json.loads(get(self.url + "/stats")[1])

    def stop(self):
        self.proc.kill()
        self.proc.wait()


class Worker:
    def __init__(self, binary, fake, bindings, worker_extra=""):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="sfn-bench-")
        config = os.path.join(self.dir, "config.toml")
        with open(config, "w") as f:
            f.write(f'[aws]\nregion = "us-east-1"\nendpoint_url = "{fake.url}"\n\n'
                    f'[worker]\nmetrics_addr = "127.0.0.1:{self.port}"\nshutdown_grace_secs = 5\n'
                    f'{worker_extra}\n\n{bindings}\n')
        env = dict(os.environ, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", RUST_LOG="warn")
        self.spawned = time.monotonic()
        self.proc = subprocess.Popen([binary, "run", "--config", config], env=env,
                                     stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.dir, "log"), "w"))

    def ready(self):
        try:
            return get(f"http://127.0.0.1:{self.port}/readyz")[0] == 200
        except OSError:
            return False

    def wait_ready(self):
        wait_until(self.ready, 30, "sfn-worker /readyz", step=0.002)
        return time.monotonic() - self.spawned

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def activity(name, concurrency, extra=""):
    return (f'[[activity]]\nname = "{name}"\narn = "arn:aws:states:us-east-1:{ACCOUNT}:activity:{name}"\n'
            f'handler = "echo"\npollers = {min(16, concurrency)}\nconcurrency = {concurrency}\n{extra}\n')


def queue(name, fake, concurrency, extra=""):
    return (f'[[queue]]\nname = "{name}"\nurl = "{fake.url}/{ACCOUNT}/{name}"\nhandler = "echo"\n'
            f'concurrency = {concurrency}\ninput_pointer = "/input"\n{extra}\n')


def throughput(bins, source, n):
    """Scenarios 1 and 2: n trivial tasks through one binding."""
    worker_bin, fake_bin = bins
    fake = Fake(fake_bin, activity_tasks=n if source == "activity" else 0,
                messages=n if source == "sqs" else 0)
    binding = activity("bench", 256, "heartbeat_secs = 0") if source == "activity" else queue("bench", fake, 256)
    w = Worker(worker_bin, fake, binding, "max_concurrency = 256")
    try:
        w.wait_ready()
        cpu0, t0 = cpu_seconds(w.proc.pid), time.monotonic()
        wait_until(lambda: fake.stats()["completed"] >= n, 600, f"{n} completions", step=0.05)
        t1, cpu1 = time.monotonic(), cpu_seconds(w.proc.pid)
        rss = memory_kib(w.proc.pid, "VmHWM")
        exit_code = w.stop()
        s = fake.stats()
    finally:
        fake.stop()
    if s["completed"] != n or s["duplicates"] or s["unknown_tokens"] or exit_code != 0:
        raise SystemExit(f"{source}: not exactly once or unclean exit: {s}, exit {exit_code}")
    return {"tasks_per_sec": n / (t1 - t0), "cpu_us_per_task": (cpu1 - cpu0) / n * 1e6,
            "peak_rss_mib": rss / 1024, "n": n}


def held(bins, n, hold_secs, window_secs):
    """Scenario 3: n tasks in flight at once, each held, heartbeat every 10 s."""
    worker_bin, fake_bin = bins
    fake = Fake(fake_bin, activity_tasks=n)
    binding = activity("held", n, f"heartbeat_secs = 10\n[activity.params]\ndelay_ms = {hold_secs * 1000}")
    w = Worker(worker_bin, fake, binding, f"max_concurrency = {n}")
    try:
        w.wait_ready()
        wait_until(lambda: fake.stats()["handed_out"] >= n, 300, f"{n} tasks in flight", step=0.05)
        time.sleep(min(10, window_secs))  # let heartbeats settle into their rhythm
        cpu0, t0 = cpu_seconds(w.proc.pid), time.monotonic()
        time.sleep(window_secs)
        cpu1, t1 = cpu_seconds(w.proc.pid), time.monotonic()
        rss = memory_kib(w.proc.pid, "VmHWM")
        s = fake.stats()
        w.proc.kill()
        w.proc.wait()
    finally:
        fake.stop()
    return {"in_flight": n, "steady_cpu_pct": (cpu1 - cpu0) / (t1 - t0) * 100, "peak_rss_mib": rss / 1024,
            "heartbeats": s["heartbeats"]}


def idle(bins, window_secs):
    """Scenario 4: an idle worker with 4 activity and 4 queue bindings."""
    worker_bin, fake_bin = bins
    # Idle means long polls held as long as the services hold them (SQS
    # waits at most 20 s; GetActivityTask up to 60 s): 20 s for both.
    fake = Fake(fake_bin, poll_hold_ms=20_000)
    bindings = "".join(activity(f"a{i}", 16) for i in range(4)) + "".join(queue(f"q{i}", fake, 16) for i in range(4))
    w = Worker(worker_bin, fake, bindings)
    try:
        ready_secs = w.wait_ready()
        cpu0, t0 = cpu_seconds(w.proc.pid), time.monotonic()
        time.sleep(window_secs)
        cpu1, t1 = cpu_seconds(w.proc.pid), time.monotonic()
        rss = memory_kib(w.proc.pid, "VmRSS")
        peak = memory_kib(w.proc.pid, "VmHWM")
        # (A clean SIGTERM would wait out the 20 s polls; shutdown is tested elsewhere.)
        w.proc.kill()
        w.proc.wait()
    finally:
        fake.stop()
    return {"ready_ms": ready_secs * 1000, "rss_mib": rss / 1024, "peak_rss_mib": peak / 1024,
            "idle_cpu_pct": (cpu1 - cpu0) / (t1 - t0) * 100}


def median_of(runs):
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--short", action="store_true", help="CI mode: small numbers, debug build")
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--n", type=int, default=None)
    p.add_argument("--json", help="also write the results here")
    a = p.parse_args()
    profile = "debug" if a.short else "release"
    n = a.n or (2000 if a.short else 100_000)
    bins = build(profile)
    results = {}
    for name, run in [
        ("1 activity tasks", lambda: throughput(bins, "activity", n)),
        ("2 SQS callbacks", lambda: throughput(bins, "sqs", n)),
        ("3 tasks held with heartbeats", lambda: held(bins, 500 if a.short else 10_000, 60 if a.short else 300, 5 if a.short else 60)),
        ("4 idle, 4+4 bindings", lambda: idle(bins, 2 if a.short else 10)),
    ]:
        runs = []
        for _ in range(a.runs):
            runs.append(run())
            print(f"  {name}: {json.dumps(runs[-1])}", file=sys.stderr)
        results[name] = median_of(runs)
    print(f"\nsfn-worker, {profile} build, medians of {a.runs} run(s):")
    for name, r in results.items():
        print(f"  {name}: " + ", ".join(f"{k} {v:,.1f}" for k, v in r.items()))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"profile": profile, "runs": a.runs, "results": results}, f, indent=2)
    if a.short:
        print("benchmark short mode: every scenario ran; every task completed exactly once")


if __name__ == "__main__":
    main()
