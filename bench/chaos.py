#!/usr/bin/env python3
"""The chaos suite: every task ends right through faults, SIGTERM and SIGKILL.

    bench/chaos.py            long mode: 100,000 tasks per source, release build
    bench/chaos.py --short    CI mode: 2,000 tasks per source, debug build
    bench/chaos.py --n 20000  another size
    bench/chaos.py --short --ledger   ledger mode (below)

One run: fake-aws (bench's fake backend) holds N activity tasks and N SQS
callback messages and injects faults on every call (5xx, throttling of Step
Functions, KMS and SQS, expired credentials, connection resets, answers lost
after the call was carried out, slow answers). It plays the state machine
around each task: a token nobody keeps alive (no heartbeat or report for
HEARTBEAT_TIMEOUT_SECS, 53 s, since it was handed out or last heartbeated;
why that long: next to the constant) times out, and a new token for the
same task is scheduled, as HeartbeatSeconds and a Retry would. Worker A (the
chaos-worker binary: sfn-worker with a handler that records every run it
starts) serves both sources. At 30% of the tasks worker B starts, and once
it is ready A gets SIGTERM; at 60% worker C starts, and once it is ready B
gets SIGKILL; C finishes. Then a
separate check: a handler sitting in spawn_blocking, two SIGTERMs, and the
worker must exit within a bound. And a control of the lapse check: a worker
that never heartbeats, against a state that times out sooner than one of its
tasks runs, must be flagged (no task of the main run outlives its timeout,
so the main run alone cannot tell that the check would fire).

What is checked, from the fake's record of every token and the handlers' own
record of every run:
- lost: a task with no accepted report;
- exactly once: every task has exactly one accepted report;
- second runs: a token whose handler ran again after a run that was not cut
  short by SIGKILL of its worker (a report sent twice, or answered
  TaskTimedOut after a lost answer, is one duplicate call, not a second run);
- wrong outcomes: an accepted report that is not that token's handler's own
  result (a success reported as a failure, another error name, another run);
- heartbeat lapses: a token that timed out while a live worker ran it.
Exit status 1 if any of these is not zero, or the control is not flagged.

Ledger mode (--ledger, half the tasks, fed at a pace): two workers at once,
the fake handing one SQS message in ten out a second time, the same faults
(on DynamoDB too, but throttling), no kill. With the task ledger: the
checks above, second runs included; without it (the control): second runs
must be counted, or the ledger run proves nothing.
"""
import argparse
import glob
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import ACCOUNT, REGION, ROOT, activity_arn, free_port, get, log, wait_until  # noqa: E402

# The fault profile of the long and short modes (fractions of calls).
FAULTS = {
    "error-rate": 0.10,         # HTTP 500
    "throttle-rate": 0.30,      # ThrottlingException / SQS RequestThrottled
    "expired-rate": 0.02,       # ExpiredTokenException
    "kms-throttle-rate": 0.02,  # KmsThrottlingException / KMS.ThrottlingException
    "reset-rate": 0.02,         # connection reset before the call is handled
    "lost-rate": 0.02,          # carried out, then the connection is reset
    "slow-rate": 0.05,          # answered 500 ms late
}
VISIBILITY_SECS = 20
HEARTBEAT_SECS = 2
# worker-core's heartbeat::RETRY_AFTER: a failed heartbeat is tried again
# this long after the last one went out.
HEARTBEAT_RETRY_SECS = 2
# The fake's long poll: a lease that lapsed is noticed, and its message handed
# out again, by the next ReceiveMessage, at most this long later.
POLL_HOLD_SECS = 1
# The longest a chaos task runs (the fake: one in a hundred sleeps 3 s).
LONGEST_RUN_SECS = 3
# The simulated states' HeartbeatSeconds. It must cover what the README
# ("Heartbeats and timeouts") says a state's must, so that a token times out
# only when a worker that held it, and lived, failed to keep it alive. The
# fake's clock, like the state's, starts at a token's first hand-out and is
# reset by a heartbeat, not by a hand-out. From a token's last keep-alive:
# - its holder is SIGKILLed: the message stays invisible for up to
#   VISIBILITY_SECS (to the end of the lease it last took);
# - the ReceiveMessage that hands it out next loses its answer (2% of those:
#   lost-rate): invisible VISIBILITY_SECS more, and no worker ran it.
#   LOST_RECEIVES such losses in a row are covered. A short run has about
#   150 messages go dark (the killed holder's and the lost answers'), in
#   batches (a receive hands out up to 10, a killed holder's leases lapse
#   together): in 20 short runs, 7 had a loss after a stretch of darkness
#   (3 to 29 messages), 1 had two in a row;
# - its next holder (a replacement is ready before the worker it replaces
#   stops, so a worker is there when the lease lapses) receives it within
#   POLL_HOLD_SECS, and heartbeats it
#   HEARTBEAT_SECS after its run starts (yielding at most half that to
#   waiting reports), and every HEARTBEAT_RETRY_SECS after a failure. About
#   41% of SendTaskHeartbeat calls fail here (5xx, throttling, expired
#   credentials, KMS throttling, resets); HEARTBEAT_ATTEMPTS all fail 1.1%
#   of the time (and most runs take milliseconds: their report, which keeps
#   the token alive too, goes before the first heartbeat is due);
# - 1 s more: the fake's sweep runs every 0.5 s, and an answer may be 0.5 s
#   slow.
# 45 s (the value before) covered one stretch of darkness and left the next
# holder 5 s after a second one: a SIGKILLed holder and then a lost answer
# timed out 4.7 s into the next holder's run, its first two heartbeats
# refused (issue 21).
LOST_RECEIVES = 1
HEARTBEAT_ATTEMPTS = 5
HEARTBEAT_TIMEOUT_SECS = ((1 + LOST_RECEIVES) * VISIBILITY_SECS + POLL_HOLD_SECS
                          + HEARTBEAT_SECS + HEARTBEAT_SECS // 2
                          + (HEARTBEAT_ATTEMPTS - 1) * HEARTBEAT_RETRY_SECS + 1)  # 53
# A longer chain (a third stretch of darkness: 6 messages in those 20 runs)
# then times out while no worker holds the message: no lapse, and the task
# is retried. That holds only while the timeout stays clear of the next
# multiple of the visibility timeout, less what the killed holder's last
# keep-alive can come after its hand-out: a timeout just past it would catch
# the next holder at the start of its run.
assert HEARTBEAT_TIMEOUT_SECS <= ((2 + LOST_RECEIVES) * VISIBILITY_SECS
                                  - LONGEST_RUN_SECS - HEARTBEAT_SECS), HEARTBEAT_TIMEOUT_SECS
# The README's rule for heartbeat_secs: at most a third of HeartbeatSeconds.
assert 3 * HEARTBEAT_SECS <= HEARTBEAT_TIMEOUT_SECS
# Ledger mode: SQS messages handed out a second time (to this worker or the
# other), and the claims' lease (a SIGKILLed holder's tasks are taken over
# this long after its last renewal).
DUPLICATE_RATE = 0.1
LEDGER_LEASE_SECS = 10
# Tasks offered per second and source in ledger mode.
LEDGER_RATE = 50
# A double SIGTERM must end the process within this, whatever its handlers do.
FORCED_EXIT_BOUND_SECS = 25
# --trace FILE: the fake writes every message's and token's events there.
TRACE = None


def build(profile):
    args = ["cargo", "build", "--quiet", "--locked", "-p", "sfn-worker-bench"]
    if profile == "release":
        args.append("--release")
    subprocess.run(args, cwd=ROOT, check=True)
    meta = json.loads(subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps"],
                                     cwd=ROOT, check=True, capture_output=True).stdout)
    target = os.path.join(meta["target_directory"], profile)
    bins = {name: os.path.join(target, name) for name in ("fake-aws", "chaos-worker")}
    # CHAOS_WORKER_BIN: another chaos-worker build (one with symbols, to profile).
    bins["chaos-worker"] = os.environ.get("CHAOS_WORKER_BIN", bins["chaos-worker"])
    return bins


class Fake:
    def __init__(self, binary, n, faults, extra=(), trace=None, heartbeat_timeout=HEARTBEAT_TIMEOUT_SECS):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [binary, "--listen", f"127.0.0.1:{self.port}", "--activity-tasks", str(n),
                "--messages", str(n), "--poll-hold-ms", str(POLL_HOLD_SECS * 1000),
                "--heartbeat-timeout-secs", str(heartbeat_timeout), *extra]
        for k, v in faults.items():
            args += [f"--{k}", str(v)]
        env = dict(os.environ)
        if trace:
            env["FAKE_TRACE"] = trace
        self.proc = subprocess.Popen(args, stderr=subprocess.DEVNULL, env=env)
        wait_until(self.up, 10, "fake-aws")

    def up(self):
        try:
            return get(self.url + "/healthz")[0] == 200
        except OSError:
            return False

    def stats(self):
        return json.loads(get(self.url + "/stats", timeout=10)[1])

    def records(self):
        return json.loads(get(self.url + "/chaos", timeout=120)[1])["tokens"]

    def stop(self):
        self.proc.kill()
        self.proc.wait()


class Worker:
    """A chaos-worker process; its CPU time is taken from wait4 when it ends."""

    def __init__(self, binary, fake, name, workdir, runs_dir, concurrency, heartbeat_secs=HEARTBEAT_SECS,
                 watch=(), ledger=None):
        self.name = name
        # Other workers whose exit is watched for while this one starts.
        self.watch = watch
        self.port = free_port()
        config = os.path.join(workdir, f"{name}.toml")
        with open(config, "w") as f:
            f.write(f"""[aws]
region = "{REGION}"
endpoint_url = "{fake.url}"

[worker]
max_concurrency = {2 * concurrency + 16}
metrics_addr = "127.0.0.1:{self.port}"
shutdown_grace_secs = 30
cancel_grace_secs = 5
worker_name = "{name}"

[[activity]]
name = "chaos"
arn = "{activity_arn('chaos')}"
handler = "chaos"
pollers = {min(32, concurrency)}
concurrency = {concurrency}
heartbeat_secs = {heartbeat_secs}

[[queue]]
name = "chaos-sqs"
url = "{fake.url}/{ACCOUNT}/chaos"
handler = "chaos"
concurrency = {concurrency}
receivers = {min(16, concurrency)}
heartbeat_secs = {heartbeat_secs}
visibility_timeout_secs = {VISIBILITY_SECS}
input_pointer = "/input"
""")
            if ledger:
                # Both bindings claim their tasks in the fake's DynamoDB.
                f.write(f"""
[ledger]
table = "chaos-ledger"
endpoint_url = "{fake.url}"
lease_secs = {LEDGER_LEASE_SECS}
""")
        if ledger:
            text = open(config).read()
            text = text.replace('handler = "chaos"\n', 'handler = "chaos"\nledger = true\n')
            with open(config, "w") as f:
                f.write(text)
        env = dict(os.environ, AWS_ACCESS_KEY_ID="chaos", AWS_SECRET_ACCESS_KEY="chaos",
                   AWS_DEFAULT_REGION=REGION, AWS_EC2_METADATA_DISABLED="true",
                   CHAOS_RUNS_DIR=runs_dir, RUST_LOG=os.environ.get("CHAOS_RUST_LOG", "warn"))
        env.pop("AWS_ENDPOINT_URL", None)
        self.log_path = os.path.join(workdir, f"{name}.log")
        self.proc = subprocess.Popen([binary, "run", "--config", config], env=env,
                                     stdout=subprocess.DEVNULL, stderr=open(self.log_path, "w"))
        self.pid = self.proc.pid
        self.status = None
        self.cpu = None
        # When the process was seen to have ended (ms since the epoch, the
        # fake's and the run records' clock); at most 50 ms late (0.2 s while
        # another worker's progress is awaited).
        self.exited_ms = None
        try:
            wait_until(self.ready, 60, f"worker {name} ready", step=0.05, proc=self.proc)
        except SystemExit as e:
            raise SystemExit(f"{e}\n{self.tail()}")

    def ready(self):
        for w in self.watch:
            w.exited()
        try:
            return get(f"http://127.0.0.1:{self.port}/readyz")[0] == 200
        except OSError:
            return False

    def signal(self, sig):
        os.kill(self.pid, sig)

    def exited(self):
        """Reap the process if it has ended; whether it has."""
        if self.status is not None:
            return True
        pid, status, usage = os.wait4(self.pid, os.WNOHANG)
        if pid != self.pid:
            return False
        self.status = os.waitstatus_to_exitcode(status)
        self.cpu = usage.ru_utime + usage.ru_stime
        self.exited_ms = time.time() * 1000
        self.proc.returncode = self.status
        return True

    def wait(self, timeout):
        """Wait for the exit (polling, so a hang is reported); returns seconds taken."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if self.exited():
                return time.monotonic() - start
            time.sleep(0.05)
        raise SystemExit(f"worker {self.name} did not exit within {timeout} s; log: {self.log_path}")

    def tail(self, lines=20):
        try:
            return "".join(open(self.log_path).readlines()[-lines:])
        except OSError:
            return ""


def read_runs(runs_dir):
    """Every handler run: (pid, source, n, attempt, run id, started at ms)."""
    runs = []
    for path in glob.glob(os.path.join(runs_dir, "runs-*.log")):
        pid = int(os.path.basename(path)[5:-4])
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 5:
                    runs.append((pid, parts[0], int(parts[1]), int(parts[2]), parts[3], int(parts[4])))
    return runs


def analyse(records, runs, killed, n, names, exited_ms=None):
    runs_by_token = {}
    for pid, source, task, attempt, run, at_ms in runs:
        runs_by_token.setdefault((source, task, attempt), []).append((pid, run, at_ms))
    accepted = {}
    lost, wrong, lapses, duplicates, timed_out = [], [], [], 0, 0
    for r in records:
        duplicates += r["refused"]
        key = (r["source"], r["n"], r["attempt"])
        token_runs = runs_by_token.get(key, [])
        if r["state"] == "timed_out":
            timed_out += 1
            # Timed out while a live worker ran it: its keep-alive failed. The
            # worker that held it then is the one whose run began last: an
            # earlier run by a worker that released the message at shutdown
            # (and lived) says nothing about a later holder that was killed;
            # and a worker that had already exited (it gave the task up at
            # the end of its shutdown) was not running it any more.
            before = [(at_ms, pid) for pid, _, at_ms in token_runs if at_ms < r["timed_out_at_ms"]]
            holder = max(before)[1] if before else None
            gone = (exited_ms or {}).get(holder)
            if holder is not None and holder not in killed and (gone is None or r["timed_out_at_ms"] < gone):
                lapses.append(r["token"])
        if r["state"] != "done":
            continue
        accepted.setdefault((r["source"], r["n"]), []).append(r)
        designed_failure = r["n"] % 10 == 3
        if designed_failure:
            ok = r["success"] is False and r["body"] == "Chaos.Expected"
        else:
            try:
                out = json.loads(r["body"]) if r["success"] else None
            except ValueError:
                out = None
            ok = (out is not None and out.get("source") == r["source"] and out.get("n") == r["n"]
                  and out.get("attempt") == r["attempt"]
                  and out.get("run") in {run for _, run, _ in token_runs})
        if not ok:
            wrong.append((r["token"], r["success"], (r["body"] or "")[:120]))
    for source in ("activity", "sqs"):
        for task in range(n):
            if (source, task) not in accepted:
                lost.append(f"{source} {task}")
    more_than_once = [k for k, v in accepted.items() if len(v) > 1]
    by_token = {(r["source"], r["n"], r["attempt"]): r for r in records}
    first_ms = min((at for *_, at in runs), default=0)
    second_runs, reruns_after_kill = [], 0
    for key, token_runs in runs_by_token.items():
        cut_short = sum(1 for pid, _, _ in token_runs if pid in killed)
        extra = len(token_runs) - 1
        reruns_after_kill += min(extra, cut_short)
        if extra > cut_short:
            r = by_token.get(key, {})
            second_runs.append({
                "token": r.get("token"), "state": r.get("state"), "refused": r.get("refused"),
                "accepted_run": (json.loads(r["body"]).get("run") if r.get("success") else r.get("body")),
                "runs": [{"worker": names.get(pid, pid), "run": run, "at_secs": round((at - first_ms) / 1000, 2)}
                         for pid, run, at in sorted(token_runs, key=lambda x: x[2])],
            })
    return {
        "tasks": 2 * n,
        "lost": len(lost),
        "reported_more_than_once": len(more_than_once),
        "second_runs": len(second_runs),
        "wrong_outcomes": len(wrong),
        "heartbeat_lapses": len(lapses),
        "handler_runs": len(runs),
        "reruns_after_sigkill": reruns_after_kill,
        "tokens_timed_out": timed_out,
        "duplicate_report_calls": duplicates,
        "examples": {"lost": lost[:5], "second_runs": second_runs[:10],
                     "wrong_outcomes": wrong[:5], "heartbeat_lapses": lapses[:5]},
    }


def main_run(bins, n, concurrency, workdir, faults, rate=None):
    runs_dir = os.path.join(workdir, "runs")
    os.makedirs(runs_dir)
    fake = Fake(bins["fake-aws"], n, faults, trace=TRACE,
                extra=["--rate-per-sec", str(rate)] if rate else [])
    total = 2 * n
    started = time.monotonic()
    timeline = []
    try:
        def done():
            return fake.stats()["completed"]

        def progress(target, what, worker, timeout, watch=()):
            last = [time.monotonic(), 0]

            def check():
                # A draining worker's exit is seen when it happens (its
                # exited_ms), not when the next step waits for it.
                for w in watch:
                    w.exited()
                c = done()
                if time.monotonic() - last[0] > 10:
                    log(f"  {what}: {c:,}/{total:,} tasks reported")
                    last[0] = time.monotonic()
                return c >= target
            wait_until(check, timeout, what, step=0.2, proc=worker.proc)

        log(f"chaos: {n:,} activity tasks and {n:,} SQS messages; faults {faults or 'none'}")
        a = Worker(bins["chaos-worker"], fake, "A", workdir, runs_dir, concurrency)
        progress(int(total * 0.3), "worker A to 30%", a, 3600)
        # Each replacement is started, and ready (its start-up checks
        # passed), before the worker it replaces is stopped, as in a rolling
        # deployment that adds the new worker first: a message the stopped
        # worker gives back, or whose lease lapses, finds a worker to take
        # it. Started after the stop, a replacement left those messages with
        # nobody to take them for as long as its start-up took, and its
        # start-up checks, retried 1, 2, 3, 4, 5, 5 ... s apart under these
        # faults, can take half a minute: darkness HEARTBEAT_TIMEOUT_SECS does
        # not count on (issue 21: a message A gave back at its SIGTERM waited
        # 30 s for B, B was SIGKILLed running it, and its timeout came 2.8 s
        # into C's run). The worker being replaced works on meanwhile, so it
        # is stopped past its mark: in a short run, where the debug build
        # takes a second or so to be ready, A gets SIGTERM nearer half of the
        # tasks than 30% (the timeline says where).
        timeline.append(("B starts", done(), time.monotonic() - started))
        b = Worker(bins["chaos-worker"], fake, "B", workdir, runs_dir, concurrency, watch=(a,))
        timeline.append(("B ready; A: SIGTERM", done(), time.monotonic() - started))
        a.signal(signal.SIGTERM)
        a_term = time.monotonic()
        # A drains while B works.
        progress(int(total * 0.6), "worker B to 60%", b, 3600, watch=(a,))
        if a.exited():
            timeline.append((f"A: had exited {a.status}", done(), time.monotonic() - started))
        timeline.append(("C starts", done(), time.monotonic() - started))
        c = Worker(bins["chaos-worker"], fake, "C", workdir, runs_dir, concurrency, watch=(a,))
        timeline.append(("C ready; B: SIGKILL", done(), time.monotonic() - started))
        b.signal(signal.SIGKILL)
        b.wait(10)
        a.wait(max(1, 30 + 5 + 65 + 30 - (time.monotonic() - a_term)))
        if a.status != 0:
            c.proc.kill()
            raise SystemExit(f"worker A exited {a.status} after SIGTERM:\n{a.tail()}")
        progress(total, "worker C to 100%", c, 3600)
        timeline.append(("all reported; C: SIGTERM", done(), time.monotonic() - started))
        c.signal(signal.SIGTERM)
        c.wait(30 + 5 + 65 + 30)
        if c.status != 0:
            raise SystemExit(f"worker C exited {c.status} after SIGTERM:\n{c.tail()}")
        elapsed = time.monotonic() - started
        stats = fake.stats()
        verdict = analyse(fake.records(), read_runs(runs_dir), {b.pid}, n,
                          {w.pid: w.name for w in (a, b, c)},
                          {w.pid: w.exited_ms for w in (a, b, c)})
        runs = read_runs(runs_dir)
        first_ms = min((r[5] for r in runs), default=0)
        for w in (a, b, c):
            mine = [r[5] for r in runs if r[0] == w.pid]
            if mine:
                timeline.append((f"{w.name}: first run at {(min(mine) - first_ms) / 1000:.1f} s, "
                                 f"last at {(max(mine) - first_ms) / 1000:.1f} s, {len(mine):,} runs",
                                 None, None))
    finally:
        fake.stop()
    cpu = sum(w.cpu or 0 for w in (a, b, c))
    verdict.update({
        "seconds": round(elapsed, 1),
        "faults_injected": stats["faults"],
        # The fake's call counters: how many calls of each kind the tasks took.
        "fake_calls": {k: stats[k] for k in ("polls", "empty_polls", "heartbeats", "receives",
                                             "visibility_changes", "batch_calls", "deleted",
                                             "duplicates", "unknown_tokens", "timed_out")},
        "worker_cpu_seconds": round(cpu, 2),
        "worker_cpu_us_per_task": round(cpu / total * 1e6, 1),
        "timeline": [{"event": e, "reported": r, "at_secs": None if t is None else round(t, 1)}
                     for e, r, t in timeline],
    })
    return verdict


def ledger_run(bins, n, concurrency, workdir, faults, ledger):
    """Ledger mode: two workers on the same queue and activity at once, the
    fake handing out one SQS message in ten a second time (to either), the
    faults of the main run on every call (DynamoDB's too, but throttling).
    No kill: every second run is one the ledger should have stopped (a
    SIGKILLed holder's takeover is worker-bin/tests/ledger.rs's). With the
    ledger (`ledger = true` on both bindings) no task may run twice;
    without it (the control) some must."""
    name = "ledger" if ledger else "no-ledger"
    runs_dir = os.path.join(workdir, f"runs-{name}")
    os.makedirs(runs_dir)
    # Fed at a pace, to slots fewer than the tasks: both workers get a
    # share (all at once, the first worker ready takes nearly every task,
    # and copies of a message only meet in it, where they are joined).
    fake = Fake(bins["fake-aws"], n, faults,
                extra=["--duplicate-rate", str(DUPLICATE_RATE), "--rate-per-sec", str(LEDGER_RATE)])
    concurrency = min(concurrency, 32)
    total = 2 * n
    started = time.monotonic()
    try:
        log(f"chaos, {name}: {n:,} activity tasks and {n:,} SQS messages, {DUPLICATE_RATE:.0%} of "
            f"messages handed out twice, two workers at once")
        a = Worker(bins["chaos-worker"], fake, f"{name}-A", workdir, runs_dir, concurrency, ledger=ledger)
        b = Worker(bins["chaos-worker"], fake, f"{name}-B", workdir, runs_dir, concurrency, ledger=ledger)
        wait_until(lambda: fake.stats()["completed"] >= total, 3600, f"{name}: all reported",
                   step=0.2, proc=a.proc)
        for w in (a, b):
            w.signal(signal.SIGTERM)
        for w in (a, b):
            w.wait(30 + 5 + 65 + 30)
            if w.status != 0:
                raise SystemExit(f"worker {w.name} exited {w.status} after SIGTERM:\n{w.tail()}")
        stats = fake.stats()
        verdict = analyse(fake.records(), read_runs(runs_dir), set(), n,
                          {w.pid: w.name for w in (a, b)}, {w.pid: w.exited_ms for w in (a, b)})
    finally:
        fake.stop()
    verdict.update({
        "seconds": round(time.monotonic() - started, 1),
        "duplicates_injected": stats["duplicates_injected"],
        "faults_injected": stats["faults"],
        "ledger_calls": {k: v for k, v in stats["calls"].items()
                         if k in ("PutItem", "UpdateItem", "DeleteItem")},
    })
    return verdict


def forced_exit(bins, workdir):
    """A handler sits in spawn_blocking; two SIGTERMs must end the process
    within FORCED_EXIT_BOUND_SECS, and its task is reported."""
    runs_dir = os.path.join(workdir, "runs-forced")
    os.makedirs(runs_dir)
    fake = Fake(bins["fake-aws"], 1, {}, extra=["--blocking"])
    try:
        w = Worker(bins["chaos-worker"], fake, "D", workdir, runs_dir, 8)
        wait_until(lambda: read_runs(runs_dir), 30, "the blocking handler to start", proc=w.proc)
        w.signal(signal.SIGTERM)
        time.sleep(0.5)
        w.signal(signal.SIGTERM)
        took = w.wait(FORCED_EXIT_BOUND_SECS + 30)
        reported = [r for r in fake.records() if r["state"] == "done"]
    finally:
        fake.stop()
    return {
        "exit_secs": round(took, 1),
        "bound_secs": FORCED_EXIT_BOUND_SECS,
        "exit_status": w.status,
        "reported_as": [r["body"] for r in reported],
    }


def lapse_control(bins, workdir):
    """The lapse check can fire: a worker that never heartbeats, and a state
    whose HeartbeatSeconds is shorter than one of its tasks (the 3 s task 7,
    of each source, against 2 s). No faults, no kill: its tokens must be
    flagged as lapses, and only theirs. The main run cannot show this: none
    of its tasks runs anywhere near HEARTBEAT_TIMEOUT_SECS, so its check
    would pass for a worker that sent no heartbeat at all."""
    runs_dir = os.path.join(workdir, "runs-control")
    os.makedirs(runs_dir)
    n = 8
    fake = Fake(bins["fake-aws"], n, {}, heartbeat_timeout=2)
    try:
        w = Worker(bins["chaos-worker"], fake, "E", workdir, runs_dir, 8, heartbeat_secs=86_400)
        wait_until(lambda: fake.stats()["timed_out"] >= 2, 30, "the control's task 7 to time out", proc=w.proc)
        w.signal(signal.SIGTERM)
        w.wait(30 + 5 + 30)
        verdict = analyse(fake.records(), read_runs(runs_dir), set(), n, {w.pid: "E"}, {w.pid: w.exited_ms})
    finally:
        fake.stop()
    lapsed = sorted({t.split(".")[0] for t in verdict["examples"]["heartbeat_lapses"]})
    return {"heartbeat_lapses": verdict["heartbeat_lapses"], "tasks": lapsed,
            "flagged": verdict["heartbeat_lapses"] > 0 and lapsed == ["act-7", "sqs-7"]}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--short", action="store_true", help="CI mode: 2,000 tasks per source, debug build")
    p.add_argument("--n", type=int, default=None, help="tasks per source (default 100,000; 2,000 with --short)")
    p.add_argument("--concurrency", type=int, default=256, help="slots per binding")
    p.add_argument("--json", help="also write the verdict here")
    p.add_argument("--no-faults", action="store_true",
                   help="the same run without injected faults (the fault-free figures to compare with)")
    p.add_argument("--fault", action="append", default=[], metavar="KIND=RATE",
                   help="inject only these faults (e.g. --fault error-rate=0.1), to measure one kind at a time")
    p.add_argument("--rate", type=int, default=None, metavar="PER_SEC",
                   help="offered load: the fake makes tasks available at this rate per source "
                        "(compare CPU per task at the same throughput)")
    p.add_argument("--trace", help="the fake writes every message's and token's events to this file")
    p.add_argument("--keep", help="keep the workers' configs, logs and run records in this directory")
    p.add_argument("--ledger", action="store_true",
                   help="ledger mode: two workers at once, SQS messages handed out twice; zero second "
                        "runs with the task ledger, and (the control) some without it")
    a = p.parse_args()
    global TRACE
    TRACE = a.trace
    n = a.n or (2_000 if a.short else 100_000)
    faults = {} if a.no_faults else FAULTS
    if a.fault:
        faults = {}
        for kv in a.fault:
            kind, eq, rate = kv.partition("=")
            if kind not in FAULTS and kind != "latency-ms":
                raise SystemExit(f"--fault {kv}: unknown kind {kind!r}; one of {', '.join(FAULTS)}, latency-ms")
            try:
                float(rate)
            except ValueError:
                raise SystemExit(f"--fault {kv}: expected KIND=NUMBER (a fraction of calls, or milliseconds for latency-ms)")
            faults[kind] = int(rate) if kind == "latency-ms" else float(rate)
    profile = "debug" if a.short else "release"
    log(f"building ({profile}) ...")
    bins = build(profile)
    resource.setrlimit(resource.RLIMIT_NOFILE, (65536, 65536)) if resource.getrlimit(
        resource.RLIMIT_NOFILE)[1] >= 65536 else None
    if a.keep:
        os.makedirs(a.keep, exist_ok=True)
    if a.ledger:
        return ledger_mode(bins, n // 2, a.concurrency, faults, a)
    with tempfile.TemporaryDirectory(prefix="sfn-chaos-") as tmp:
        workdir = a.keep or tmp
        verdict = main_run(bins, n, a.concurrency, workdir, faults, a.rate)
        if a.json:
            with open(a.json, "w") as f:
                json.dump(verdict, f, indent=2)
        verdict["forced_exit"] = forced_exit(bins, workdir)
        verdict["lapse_control"] = lapse_control(bins, workdir)
    verdict["mode"] = "short" if a.short else "long"
    verdict["faults"] = faults
    verdict["rate_per_source_per_sec"] = a.rate
    print(json.dumps(verdict, indent=2))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(verdict, f, indent=2)
    problems = [k for k in ("lost", "reported_more_than_once", "second_runs", "wrong_outcomes",
                            "heartbeat_lapses") if verdict[k]]
    forced = verdict["forced_exit"]
    if forced["exit_secs"] > FORCED_EXIT_BOUND_SECS:
        problems.append(f"forced exit took {forced['exit_secs']} s")
    if forced["reported_as"] != ["Worker.ShuttingDown"]:
        problems.append(f"the blocked task was reported as {forced['reported_as']}")
    if not verdict["lapse_control"]["flagged"]:
        problems.append(f"the lapse check missed a worker that never heartbeats: {verdict['lapse_control']}")
    if problems:
        raise SystemExit(f"chaos: FAILED: {', '.join(problems)}")
    log(f"chaos: {verdict['tasks']:,} tasks through {verdict['faults_injected']:,} injected faults, "
        f"a SIGTERM and a SIGKILL: 0 lost, 0 second runs, 0 wrong outcomes")


def ledger_mode(bins, n, concurrency, faults, a):
    with tempfile.TemporaryDirectory(prefix="sfn-chaos-ledger-") as tmp:
        workdir = a.keep or tmp
        verdict = {"with_ledger": ledger_run(bins, n, concurrency, workdir, faults, True),
                   "control_without_ledger": ledger_run(bins, n, concurrency, workdir, faults, False)}
    verdict["mode"] = "ledger, short" if a.short else "ledger, long"
    verdict["faults"] = faults
    print(json.dumps(verdict, indent=2))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(verdict, f, indent=2)
    run, control = verdict["with_ledger"], verdict["control_without_ledger"]
    problems = [k for k in ("lost", "reported_more_than_once", "second_runs", "wrong_outcomes",
                            "heartbeat_lapses") if run[k]]
    problems += [f"control: {k}" for k in ("lost", "reported_more_than_once", "wrong_outcomes") if control[k]]
    if not control["second_runs"]:
        problems.append("the control without the ledger ran no task twice, so the ledger run proves nothing")
    if problems:
        raise SystemExit(f"chaos ledger mode: FAILED: {', '.join(problems)}")
    log(f"chaos ledger mode: {run['tasks']:,} tasks, {run['duplicates_injected']:,} messages handed out "
        f"twice to two workers: 0 second runs with the ledger, {control['second_runs']:,} without it")


if __name__ == "__main__":
    main()
