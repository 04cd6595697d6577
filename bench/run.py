#!/usr/bin/env python3
"""Benchmarks: sfn-worker side by side with the workers people use today,
and with the floor set by the requests themselves, against bench's fake AWS
backend (fake-aws). One invocation runs every scenario for every contender.

    bench/run.py                 the full run (release builds); prints the table
    bench/run.py --runs 3        repeat each scenario; medians, and ratios
                                 against sfn-worker taken pair by pair per run
    bench/run.py --short         CI mode: small numbers, debug builds; checks that
                                 every contender completes every task exactly
                                 once, not speed
    bench/run.py --only sfn-worker,floor     a subset of contenders

Scenarios (issue 6): 1 activity tasks, trivial handler; 2 SQS callbacks,
trivial handler; 3 tasks held in flight with heartbeats every 10 s (and
visibility extension for SQS); 4 an idle worker with 4 activity and 4 queue
bindings; 5 (issue 23) SQS callbacks through fault profiles (none, 10% 5xx,
10% 5xx + 30% random throttling, a 200/s token bucket on each SendTask*),
and 5h tasks held through the same profiles, none of which may lapse. Every
throughput scenario reports AWS requests per task by operation (fake-aws
counts them) and the SQS bill per million tasks; `--rate` offers tasks at a
fixed rate instead of all at once. Measurements come from /proc for the contender's whole process
tree: CPU time (user + sys, including reaped children), peak RSS (VmHWM,
summed over the tree).

Peers are installed here: npm packages into bench/peers/node_modules (npm ci,
from the committed lockfile), Python ones into a virtualenv under
${SFN_WORKER_STATE_DIR:-~/.cache/sfn-worker}/bench-venv. Versions and
settings: bench/peers/ and BENCHMARKS.md.
"""
import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS = os.path.join(ROOT, "bench", "peers")
STATE = os.environ.get("SFN_WORKER_STATE_DIR") or os.path.expanduser("~/.cache/sfn-worker")
VENV = os.path.join(STATE, "bench-venv")
CLK_TCK = os.sysconf("SC_CLK_TCK")
ACCOUNT = "123456789012"
REGION = "us-east-1"


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, timeout=2):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read().decode()


def wait_until(pred, timeout, what, step=0.01, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"{what}: the contender exited early with {proc.returncode}")
        time.sleep(step)
    raise SystemExit(f"timed out after {timeout} s waiting for {what}")


# --- /proc readings over a process tree --------------------------------------

def _stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        head, rest = f.read().rsplit(")", 1)
    return rest.split()


def tree(root):
    """root and all its descendants that are alive now."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(_stat(entry)[1])
            except (OSError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cpu_seconds(root):
    """utime + stime of every live process in the tree, plus cutime + cstime
    (children already reaped). A reaped child's time moves into its parent's
    cutime, so nothing is counted twice."""
    total = 0
    for pid in tree(root):
        try:
            f = _stat(pid)
        except OSError:
            continue
        # fields[11..14]: utime, stime, cutime, cstime (14th to 17th of the line)
        total += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    return total / CLK_TCK


def memory_kib(root, key):
    total = 0
    for pid in tree(root):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


# --- builds and installs -----------------------------------------------------

def build(profile):
    args = ["cargo", "build", "--quiet", "--locked", "-p", "sfn-worker", "-p", "sfn-worker-bench"]
    if profile == "release":
        args.append("--release")
    subprocess.run(args, cwd=ROOT, check=True)
    meta = json.loads(subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps"],
                                     cwd=ROOT, check=True, capture_output=True).stdout)
    target = os.path.join(meta["target_directory"], profile)
    bins = {name: os.path.join(target, name) for name in ("sfn-worker", "fake-aws", "floor")}
    # BENCH_SFN_WORKER_BIN: another sfn-worker binary (a build from before a
    # change), run against the same fake-aws and floor as this checkout's.
    bins["sfn-worker"] = os.environ.get("BENCH_SFN_WORKER_BIN", bins["sfn-worker"])
    return bins


def install_peers():
    """npm ci and a pip virtualenv. Returns the contenders that could not be
    installed, with why; the run goes on without them and says so."""
    missing = {}
    if not os.path.isdir(os.path.join(PEERS, "node_modules", "sqs-consumer")):
        log("installing Node peers (npm ci) ...")
        r = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=PEERS,
                           capture_output=True, text=True)
        if r.returncode != 0:
            for name in ("sqs-consumer", "step-function-worker"):
                missing[name] = "npm ci failed: " + r.stderr.strip()[-300:]
    python = os.path.join(VENV, "bin", "python")
    stamp = os.path.join(VENV, "requirements.txt")
    wanted = open(os.path.join(PEERS, "requirements.txt")).read()
    if not (os.path.exists(stamp) and open(stamp).read() == wanted):
        log(f"installing Python peers into {VENV} ...")
        r = subprocess.run([sys.executable, "-m", "venv", VENV], capture_output=True, text=True)
        if r.returncode == 0:
            r = subprocess.run([python, "-m", "pip", "install", "-q", "-r",
                                os.path.join(PEERS, "requirements.txt")], capture_output=True, text=True)
        if r.returncode != 0:
            for name in ("boto3-loop", "stefuna", "stepfunctions-activity-worker"):
                missing[name] = "pip install failed: " + r.stderr.strip()[-300:]
        else:
            with open(stamp, "w") as f:
                f.write(wanted)
    return missing


def versions():
    out = {"node": subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()}
    lock = os.path.join(PEERS, "package-lock.json")
    if os.path.exists(lock):
        packages = json.load(open(lock)).get("packages", {})
        for name in ("sqs-consumer", "step-function-worker", "@aws-sdk/client-sfn", "@aws-sdk/client-sqs", "aws-sdk"):
            out[name] = packages.get(f"node_modules/{name}", {}).get("version")
    python = os.path.join(VENV, "bin", "python")
    if os.path.exists(python):
        out["python"] = subprocess.run([python, "--version"], capture_output=True, text=True).stdout.strip()
        code = ("import importlib.metadata as m\nfor p in ('boto3','botocore','stefuna','stepfunctions-activity-worker'):"
                "\n    print(p, m.version(p))")
        for line in subprocess.run([python, "-c", code], capture_output=True, text=True).stdout.split("\n"):
            if line:
                k, v = line.split()
                out[k] = v
    return out


# --- the fake backend ----------------------------------------------------------

class Fake:
    def __init__(self, binary, activity_tasks=0, messages=0, poll_hold_ms=500, callback_ids=False, rate=None,
                 extra=()):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [binary, "--listen", f"127.0.0.1:{self.port}", "--activity-tasks", str(activity_tasks),
             "--messages", str(messages), "--poll-hold-ms", str(poll_hold_ms)]
            + (["--callback-ids"] if callback_ids else [])
            + (["--rate-per-sec", str(rate)] if rate else [])
            + list(extra),
            stderr=subprocess.DEVNULL)
        # Preloading takes a while for millions of tasks (scenario L).
        wait_until(self.up, 10 + (activity_tasks + messages) / 100_000, "fake-aws")

    def up(self):
        try:
            return get(self.url + "/healthz")[0] == 200
        except OSError:
            return False

    def stats(self):
        return json.loads(get(self.url + "/stats")[1])

    def queue_url(self, name):
        return f"{self.url}/{ACCOUNT}/{name}"

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def activity_arn(name):
    return f"arn:aws:states:{REGION}:{ACCOUNT}:activity:{name}"


# --- contenders ----------------------------------------------------------------
#
# A contender turns a job into a running process. Jobs:
#   ("activity", fake, None)   scenario 1
#   ("sqs", fake, None)        scenario 2
#   ("durable", fake, None)    scenario 2d: SQS messages with Lambda durable callback ids
#   ("held-activity", fake, n) scenario 3, n tasks held, heartbeat every 10 s
#   ("held-sqs", fake, n)      scenario 3 over SQS (heartbeat + visibility)
#   ("idle", fake, None)       scenario 4: 4 activity and 4 queue bindings
# start() returns (Popen, ready) or None when the contender cannot do the job.

# The task ledger in the fake's DynamoDB (scenarios 1l, 2l): the
# endpoint is [aws] endpoint_url's, the fake's.
LEDGER = '\n[ledger]\ntable = "bench-ledger"\n'
HOLD_SECS = 300
HEARTBEAT_SECS = 10


class Contender:
    name = ""
    # Scenario 1/2 sizes relative to sfn-worker's N (slow peers run fewer
    # tasks; every figure is per task), and scenario 3's in-flight count.
    share = 1.0
    held = None
    settings = ""

    def __init__(self, bins, workdir):
        self.bins, self.dir = bins, workdir

    def env(self, fake, **extra):
        e = dict(os.environ, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_REGION=REGION,
                 AWS_DEFAULT_REGION=REGION, AWS_ENDPOINT_URL=fake.url, AWS_EC2_METADATA_DISABLED="true",
                 AWS_SDK_JS_SUPPRESS_MAINTENANCE_MODE_MESSAGE="1", BENCH_ENDPOINT=fake.url,
                 NODE_NO_WARNINGS="1", PYTHONUNBUFFERED="1")
        e.update({k: str(v) for k, v in extra.items()})
        return e

    def activity_env(self, job, fake, n):
        """The environment of a peer with a concurrency knob that serves
        activities and can hold tasks: 16 at once for throughput, n held; or
        None for a job it does not do."""
        if job == "activity":
            return self.env(fake, BENCH_ACTIVITY_ARN=activity_arn("bench"), BENCH_CONCURRENCY=16)
        if job == "held-activity":
            return self.env(fake, BENCH_ACTIVITY_ARN=activity_arn("held"), BENCH_CONCURRENCY=n,
                            BENCH_HOLD_MS=HOLD_SECS * 1000, BENCH_HEARTBEAT_SECS=HEARTBEAT_SECS)
        return None

    def spawn(self, args, env, cwd=None):
        return subprocess.Popen(args, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                                stderr=open(os.path.join(self.dir, f"{self.name}.log"), "a"),
                                start_new_session=True)


class SfnWorker(Contender):
    name = "sfn-worker"
    held = 10_000
    settings = ("defaults (threads 1, sfn_client direct, glibc malloc) but for: "
                "activity: 16 pollers, concurrency 256; SQS: concurrency 256 (4 receivers x 10); "
                "held: concurrency 10,000, heartbeat_secs 10 (SQS: visibility_timeout_secs 30)")

    def start(self, job, fake, n):
        port = free_port()
        if job == "activity":
            bindings, extra = self.activity("bench", 256, "heartbeat_secs = 0"), "max_concurrency = 256"
        elif job == "sqs":
            bindings, extra = self.queue("bench", fake, 256), "max_concurrency = 256"
        elif job == "activity-ledger":
            bindings = self.activity("bench", 256, "heartbeat_secs = 0\nledger = true") + LEDGER
            extra = "max_concurrency = 256"
        elif job == "sqs-ledger":
            bindings, extra = self.queue("bench", fake, 256, "ledger = true") + LEDGER, "max_concurrency = 256"
        elif job == "long":
            bindings = self.activity("long-activities", 256, "heartbeat_secs = 0") + self.queue("long", fake, 256)
            extra = "max_concurrency = 512"
        elif job == "durable":
            bindings = self.queue("bench", fake, 256, 'completes = "durable-callback"')
            extra = "max_concurrency = 256"
        elif job == "held-activity":
            bindings = self.activity("held", n, f"heartbeat_secs = {HEARTBEAT_SECS}\n"
                                                 f"[activity.params]\ndelay_ms = {HOLD_SECS * 1000}")
            extra = f"max_concurrency = {n}"
        elif job == "faults-held-sqs":
            bindings = self.queue("held", fake, 256, f"heartbeat_secs = {FAULT_HEARTBEAT_SECS}\n"
                                                     f"visibility_timeout_secs = 10\n"
                                                     f"[queue.params]\ndelay_ms = {FAULT_HOLD_SECS * 1000}")
            extra = "max_concurrency = 256"
        elif job == "held-sqs":
            bindings = self.queue("held", fake, n, f"heartbeat_secs = {HEARTBEAT_SECS}\nvisibility_timeout_secs = 30\n"
                                                   f"[queue.params]\ndelay_ms = {HOLD_SECS * 1000}")
            extra = f"max_concurrency = {n}"
        else:
            bindings = ("".join(self.activity(f"a{i}", 16) for i in range(4))
                        + "".join(self.queue(f"q{i}", fake, 16) for i in range(4)))
            extra = ""
        config = os.path.join(self.dir, "config.toml")
        with open(config, "w") as f:
            # BENCH_SFN_WORKER_AWS: extra [aws] lines, to compare client settings
            # (sqs_client = "sdk") with the same binary.
            aws_extra = os.environ.get("BENCH_SFN_WORKER_AWS", "")
            f.write(f'[aws]\nregion = "{REGION}"\nendpoint_url = "{fake.url}"\n'
                    f'lambda_endpoint_url = "{fake.url}"\n{aws_extra}\n\n'
                    f'[worker]\nmetrics_addr = "127.0.0.1:{port}"\nshutdown_grace_secs = 5\n{extra}\n\n{bindings}\n')
        # The worker's default log level (info), as users run it; BENCH_RUST_LOG
        # to measure another.
        log_level = os.environ.get("BENCH_RUST_LOG", "info")
        proc = self.spawn([self.bins["sfn-worker"], "run", "--config", config], self.env(fake, RUST_LOG=log_level))

        def ready():
            try:
                return get(f"http://127.0.0.1:{port}/readyz")[0] == 200
            except OSError:
                return False
        return proc, ready

    @staticmethod
    def activity(name, concurrency, extra=""):
        return (f'[[activity]]\nname = "{name}"\narn = "{activity_arn(name)}"\nhandler = "echo"\n'
                f'pollers = {min(16, concurrency)}\nconcurrency = {concurrency}\n{extra}\n')

    @staticmethod
    def queue(name, fake, concurrency, extra=""):
        return (f'[[queue]]\nname = "{name}"\nurl = "{fake.queue_url(name)}"\nhandler = "echo"\n'
                f'concurrency = {concurrency}\ninput_pointer = "/input"\n{extra}\n')


class Floor(Contender):
    name = "floor"
    held = 10_000
    settings = "bench/src/bin/floor.rs: hyper 1 client, keep-alive, no SDK; 16 activity loops; 4 SQS loops"

    def start(self, job, fake, n):
        base = [self.bins["floor"], "--endpoint", fake.url]
        if job == "activity":
            args = base + ["--mode", "activity", "--concurrency", "16", "--activity-arn", activity_arn("bench")]
        elif job == "sqs":
            args = base + ["--mode", "sqs", "--concurrency", "4", "--queue-url", fake.queue_url("bench")]
        elif job == "held-activity":
            args = base + ["--mode", "heartbeat", "--concurrency", "16", "--hold", str(n),
                           "--heartbeat-secs", str(HEARTBEAT_SECS), "--activity-arn", activity_arn("held")]
        else:
            return None
        return self.spawn(args, self.env(fake)), None


class SqsConsumer(Contender):
    name = "sqs-consumer"
    share = 0.2
    held = 1_000
    settings = ("handleMessageBatch, batchSize 10, waitTimeSeconds 20, 4 consumers (held: one consumer per 10 "
                "messages, visibilityTimeout 30, heartbeatInterval 10, SendTaskHeartbeat every 10 s per message); "
                "reports with @aws-sdk/client-sfn SendTaskSuccess")

    def start(self, job, fake, n):
        if job == "sqs":
            env = self.env(fake, BENCH_QUEUE_URL=fake.queue_url("bench"), BENCH_CONSUMERS=4)
        elif job == "held-sqs":
            env = self.env(fake, BENCH_QUEUE_URL=fake.queue_url("held"), BENCH_CONSUMERS=(n + 9) // 10,
                           BENCH_HOLD_MS=HOLD_SECS * 1000, BENCH_HEARTBEAT_SECS=HEARTBEAT_SECS)
        else:
            return None
        return self.spawn(["node", "sqs-consumer.mjs"], env, cwd=PEERS), None


class StepFunctionWorker(Contender):
    name = "step-function-worker"
    share = 0.2
    held = 1_000
    settings = "concurrency 16 (held: concurrency = tasks held, heartbeat() every 10 s); aws-sdk v2 as it ships"

    def start(self, job, fake, n):
        env = self.activity_env(job, fake, n)
        return env and (self.spawn(["node", "step-function-worker.js"], env, cwd=PEERS), None)


class PythonPeer(Contender):
    share = 0.05
    python = os.path.join(VENV, "bin", "python")


class Boto3Loop(PythonPeer):
    name = "boto3-loop"
    settings = "one thread: poll, handle, SendTaskSuccess (SQS: ReceiveMessage 10, DeleteMessageBatch)"

    def start(self, job, fake, n):
        if job == "activity":
            env = self.env(fake, BENCH_ACTIVITY_ARN=activity_arn("bench"))
        elif job == "sqs":
            env = self.env(fake, BENCH_QUEUE_URL=fake.queue_url("bench"))
        else:
            return None
        return self.spawn([self.python, "boto3_loop.py"], env, cwd=PEERS), None


class Stefuna(PythonPeer):
    name = "stefuna"
    settings = "processes = CPU count (2, its default), maxtasksperchild 100 (default), start_method spawn (default)"

    def start(self, job, fake, n):
        if job != "activity":
            return None
        env = self.env(fake, BENCH_ACTIVITY_ARN=activity_arn("bench"))
        return self.spawn([self.python, "-m", "stefuna.stefuna", "--config", "stefuna_peer.config"], env, cwd=PEERS), None


class ActivityWorkerPy(PythonPeer):
    name = "stepfunctions-activity-worker"
    held = 1_000
    settings = "worker_count 16 (held: worker_count = tasks held, heartbeat_interval 10)"

    def start(self, job, fake, n):
        env = self.activity_env(job, fake, n)
        return env and (self.spawn([self.python, "stepfunctions_activity_worker_peer.py"], env, cwd=PEERS), None)


CONTENDERS = [SfnWorker, Floor, SqsConsumer, StepFunctionWorker, Boto3Loop, Stefuna, ActivityWorkerPy]


def stop(proc, gently):
    """SIGTERM (sfn-worker must then exit 0) or SIGKILL, to the whole session."""
    if gently:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    return 0 if not gently else -9


def started(fake):
    s = fake.stats()
    return s["polls"] + s["receives"] > 0


def start_perf(c, source, proc):
    """BENCH_PERF=DIR: record a `perf record -g` profile of sfn-worker over the
    measured span of scenarios 1 and 2, to DIR/<scenario>.data. perf's own
    CPU is not in the contender's process tree, so the figures stand, but
    sampling does slow the worker a little: take profiles and figures from
    separate runs."""
    out = os.environ.get("BENCH_PERF")
    if not out or c.name != "sfn-worker":
        return None
    os.makedirs(out, exist_ok=True)
    return subprocess.Popen(["perf", "record", "-F", os.environ.get("BENCH_PERF_FREQ", "999")] + os.environ.get("BENCH_PERF_CALLGRAPH", "-g").split() + ["-q", "-p", str(proc.pid),
                             "-o", os.path.join(out, f"{source}.data")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_perf(perf):
    if perf is not None:
        perf.send_signal(signal.SIGINT)
        perf.wait()


# --- scenarios -------------------------------------------------------------------

# Public on-demand prices (us-east-1, read 2026-12-02): SQS standard queues
# $0.40 per million requests after the free million a month
# (https://aws.amazon.com/sqs/pricing/). Step Functions bills state
# transitions, not its API calls (https://aws.amazon.com/step-functions/pricing/):
# GetActivityTask and SendTask* cost quota, not money.
SQS_USD_PER_MILLION_REQUESTS = 0.40
# DynamoDB on-demand writes, us-east-1 ($0.625 per million write request
# units, https://aws.amazon.com/dynamodb/pricing/on-demand/); a ledger
# write of an item up to 1 KB is one unit.
DYNAMODB_USD_PER_MILLION_WRITES = 0.625
SERVICE_OF = {"ReceiveMessage": "sqs", "DeleteMessage": "sqs", "DeleteMessageBatch": "sqs",
              "ChangeMessageVisibility": "sqs", "ChangeMessageVisibilityBatch": "sqs", "GetQueueAttributes": "sqs"}


def requests(before, after, tasks):
    """AWS calls per task between two /stats readings: by operation, and
    summed by service, with the SQS bill per million tasks."""
    calls = {op: c["calls"] - before.get(op, {}).get("calls", 0) for op, c in after.items()}
    calls = {op: n / tasks for op, n in sorted(calls.items()) if n}
    sqs = sum(v for op, v in calls.items() if SERVICE_OF.get(op) == "sqs")
    ddb = sum(v for op, v in calls.items() if op in ("PutItem", "UpdateItem", "DeleteItem"))
    sfn = sum(v for op, v in calls.items()
              if SERVICE_OF.get(op) != "sqs" and "Durable" not in op and "Item" not in op)
    out = {"sqs_req_per_task": sqs, "sfn_req_per_task": sfn,
           "sqs_usd_per_million_tasks": sqs * SQS_USD_PER_MILLION_REQUESTS}
    if ddb:
        out.update({"ledger_req_per_task": ddb,
                    "ledger_usd_per_million_tasks": ddb * DYNAMODB_USD_PER_MILLION_WRITES})
    return out, calls


def throughput(c, fake_bin, source, n, rate=None, extra=(), sample_at=None):
    """Scenarios 1 and 2: n trivial tasks. The clock and the CPU reading start
    at the contender's first poll, so start-up (module loading, JIT) is not
    counted against anyone. `rate`: tasks offered per second instead of all
    at once; `extra`: fake-aws flags (faults); `sample_at`: seconds after
    the first poll at which /stats is read once more (the bucket profile's
    settled span starts there)."""
    # At an offered rate, empty polls are part of the bill: they are held
    # as long as the services hold them (SQS 20 s; GetActivityTask up to
    # 60 s, 20 s here too), not the 500 ms that keeps saturated runs quick.
    fake = Fake(fake_bin, activity_tasks=n if source.startswith("activity") else 0,
                messages=n if source.startswith(("sqs", "durable")) else 0, callback_ids=source == "durable",
                rate=rate, extra=extra, poll_hold_ms=20_000 if rate else 500)
    try:
        launched = c.start(source, fake, n)
        if launched is None:
            return None
        proc, _ = launched
        try:
            wait_until(lambda: started(fake), 60, f"{c.name}'s first poll", step=0.005, proc=proc)
            perf = start_perf(c, source, proc)
            s0, cpu0, t0 = fake.stats(), cpu_seconds(proc.pid), time.monotonic()
            fake_cpu0 = cpu_seconds(fake.proc.pid)
            mid = None
            if sample_at:
                wait_until(lambda: time.monotonic() - t0 >= sample_at or fake.stats()["completed"] >= n, 900,
                           f"{c.name}: {sample_at} s", step=0.02, proc=proc)
                mid = (fake.stats(), time.monotonic())
            wait_until(lambda: fake.stats()["completed"] >= n, 900, f"{c.name}: {n} completions", step=0.02, proc=proc)
            t1, cpu1 = time.monotonic(), cpu_seconds(proc.pid)
            fake_cpu1 = cpu_seconds(fake.proc.pid)
            s1 = fake.stats()
            stop_perf(perf)
            rss = memory_kib(proc.pid, "VmHWM")
        finally:
            exit_code = stop(proc, gently=c.name == "sfn-worker")
        s = fake.stats()
    finally:
        fake.stop()
    if s["completed"] != n or s["duplicates"] or s["unknown_tokens"] or exit_code != 0:
        raise SystemExit(f"{c.name} {source}: not exactly once or unclean exit: {s}, exit {exit_code}")
    done = s1["completed"] - s0["completed"]
    per_task, calls = requests(s0["calls"], s1["calls"], max(done, 1))
    # fake-aws shares the machine: its CPU per task, and both processes'
    # share of the machine's cores, say whether a run was bound by CPU.
    result = {"n": n, "tasks_per_sec": n / (t1 - t0), "cpu_us_per_task": (cpu1 - cpu0) / n * 1e6,
              "fake_cpu_us_per_task": (fake_cpu1 - fake_cpu0) / n * 1e6,
              "machine_busy_pct": (cpu1 - cpu0 + fake_cpu1 - fake_cpu0) / (t1 - t0) / len(os.sched_getaffinity(0)) * 100,
              "peak_rss_mib": rss / 1024, **per_task, "calls_per_task": calls}
    if mid is not None:
        (sm, tm) = mid
        settled = {op: {k: s1["calls"][op][k] - sm["calls"].get(op, {}).get(k, 0) for k in ("calls", "throttled")}
                   for op in s1["calls"] if op.startswith("SendTask")}
        sent = sum(v["calls"] for v in settled.values())
        refused = sum(v["throttled"] for v in settled.values())
        result["settled_send_task_accepted_per_sec"] = (sent - refused) / max(t1 - tm, 1e-9)
        result["settled_send_task_refused_pct"] = refused / max(sent, 1) * 100
    return result


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def idle_rss_kib(c, fake_bin, source, n):
    """The RSS of the same worker, configured for n held tasks, with nothing
    to hold: what scenario 3's per-task figure is taken above."""
    fake = Fake(fake_bin)
    try:
        launched = c.start(f"held-{source}", fake, n)
        if launched is None or launched[1] is None:
            if launched:
                stop(launched[0], gently=False)
            return None
        proc, ready = launched
        try:
            wait_until(ready, 30, f"{c.name} ready", step=0.01, proc=proc)
            time.sleep(2)
            return memory_kib(proc.pid, "VmRSS")
        finally:
            stop(proc, gently=False)
    finally:
        fake.stop()


def held(c, fake_bin, source, n, window_secs):
    """Scenario 3: n tasks in flight at once, each held HOLD_SECS, heartbeat
    every 10 s (SQS: and visibility extended). Steady CPU over the window,
    and CPU per keep-alive call (heartbeats plus visibility changes), which
    is the figure that compares across different n. RSS per held task is
    taken above the same worker idle (scenario 3's growth table)."""
    idle_kib = idle_rss_kib(c, fake_bin, source, n) if c.name == "sfn-worker" else None
    fake = Fake(fake_bin, activity_tasks=n if source == "activity" else 0,
                messages=n if source in ("sqs", "durable") else 0, callback_ids=source == "durable")
    try:
        launched = c.start(f"held-{source}", fake, n)
        if launched is None:
            return None
        proc, _ = launched
        try:
            wait_until(lambda: fake.stats()["handed_out"] >= n, 300, f"{c.name}: {n} tasks in flight", step=0.05,
                       proc=proc)
            time.sleep(HEARTBEAT_SECS + 2)  # every task has had its first heartbeat: steady rhythm
            s0, cpu0, t0, fd0 = fake.stats(), cpu_seconds(proc.pid), time.monotonic(), fds(proc.pid)
            time.sleep(window_secs)
            s1, cpu1, t1 = fake.stats(), cpu_seconds(proc.pid), time.monotonic()
            rss, now, fd1 = memory_kib(proc.pid, "VmHWM"), memory_kib(proc.pid, "VmRSS"), fds(proc.pid)
        finally:
            stop(proc, gently=False)
    finally:
        fake.stop()
    calls = (s1["heartbeats"] - s0["heartbeats"]) + (s1["visibility_changes"] - s0["visibility_changes"])
    if s1["completed"] or s1["duplicates"] or s1["unknown_tokens"] or not s1["heartbeats"]:
        raise SystemExit(f"{c.name} held {source}: a held task was completed or duplicated, "
                         f"or nothing heartbeated: {s1}")
    return {"in_flight": n, "steady_cpu_pct": (cpu1 - cpu0) / (t1 - t0) * 100,
            "cpu_us_per_keepalive": (cpu1 - cpu0) / max(calls, 1) * 1e6,
            "keepalives_per_sec": calls / (t1 - t0), "peak_rss_mib": rss / 1024, "rss_mib": now / 1024,
            "kib_per_task": rss / n,
            **({"idle_rss_mib": idle_kib / 1024, "kib_per_task_above_idle": (now - idle_kib) / n}
               if idle_kib else {}),
            "open_fds": max(fd0, fd1)}


# Scenario 5: SQS callbacks through faults, against fault-free at the same
# concurrency (256) and latency (2 ms). `bucket` is congestion: SendTask*
# through a token bucket of 200 calls/s each (AWS's quotas are per API).
FAULT_PROFILES = {
    "none": [],
    "5xx": ["--error-rate", "0.1"],
    "soak": ["--error-rate", "0.1", "--throttle-rate", "0.3"],
    "bucket": ["--bucket", "SendTask*=200"],
}
FAULT_LATENCY = ["--latency-ms", "2"]
FAULT_HOLD_SECS = 15
FAULT_HEARTBEAT_SECS = 3


def held_through_faults(c, fake_bin, profile, n):
    """Scenario 5h: n SQS tasks, 256 at a time, each held 15 s with a
    heartbeat every 3 s and a visibility timeout of 10 s, through a fault
    profile. The fake times out a token 15 s after its last heartbeat
    (chaos mode: a state's HeartbeatSeconds 15) and counts visibility
    lapses: both must stay 0."""
    fake = Fake(fake_bin, messages=n, extra=FAULT_LATENCY + FAULT_PROFILES[profile]
                + ["--heartbeat-timeout-secs", "15"])
    try:
        launched = c.start("faults-held-sqs", fake, n)
        if launched is None:
            return None
        proc, _ = launched
        try:
            wait_until(lambda: started(fake), 60, f"{c.name}'s first poll", step=0.01, proc=proc)
            t0 = time.monotonic()
            wait_until(lambda: fake.stats()["completed"] >= n, 900, f"{c.name}: {n} held completions", step=0.1,
                       proc=proc)
            t1 = time.monotonic()
        finally:
            exit_code = stop(proc, gently=True)
        s = fake.stats()
    finally:
        fake.stop()
    # Every profile is strict, the soak's 40% of failing calls included: a
    # failed heartbeat is tried again a second later (heartbeat.rs
    # RETRY_AFTER), about a dozen attempts within HeartbeatSeconds 15, and
    # the send gate no longer holds heartbeats back after a throttle
    # (0 timeouts in 2,560 soak tasks over five runs, BENCHMARKS.md). So a
    # timeout, a lapse or a refused (duplicate) report each fails the run.
    lapsed = s["timed_out"] or s["lapses"] or s["duplicates"]
    if s["unknown_tokens"] or exit_code != 0 or lapsed:
        raise SystemExit(f"{c.name} held through {profile}: a task lapsed, ran twice or was lost: {s}, "
                         f"exit {exit_code}")
    keepalive = s["calls"].get("SendTaskHeartbeat", {}).get("calls", 0)
    return {"n": n, "secs": t1 - t0, "timed_out": s["timed_out"], "lapses": s["lapses"],
            "heartbeat_calls_per_task": keepalive / n}


def idle(c, fake_bin, window_secs):
    """Scenario 4: an idle worker with 4 activity and 4 queue bindings. The
    fake holds polls 20 s, as SQS does at most (GetActivityTask holds up to
    60 s)."""
    fake = Fake(fake_bin, poll_hold_ms=20_000)
    try:
        launched = c.start("idle", fake, None)
        if launched is None:
            return None
        proc, ready = launched
        if ready is None:
            stop(proc, gently=False)
            return None
        spawned = time.monotonic()
        try:
            wait_until(ready, 30, f"{c.name} ready", step=0.002, proc=proc)
            ready_secs = time.monotonic() - spawned
            cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
            time.sleep(window_secs)
            cpu1, t1 = cpu_seconds(proc.pid), time.monotonic()
            rss, peak = memory_kib(proc.pid, "VmRSS"), memory_kib(proc.pid, "VmHWM")
        finally:
            # A clean SIGTERM would wait out the 20 s polls; shutdown is tested elsewhere.
            stop(proc, gently=False)
    finally:
        fake.stop()
    return {"ready_ms": ready_secs * 1000, "rss_mib": rss / 1024, "peak_rss_mib": peak / 1024,
            "idle_cpu_pct": (cpu1 - cpu0) / (t1 - t0) * 100}


# Scenario L: one worker, both sources, a few percent of calls failing
# (500s on every call; throttles on every call but GetActivityTask, which
# fake-aws never throttles), RSS and open descriptors sampled every second
# (the issue 23 memory line).
LONG_FAULTS = ["--error-rate", "0.02", "--throttle-rate", "0.02"]


def long_run(c, fake_bin, n, samples_to):
    """n tasks through one worker, half activities and half SQS callbacks,
    256 at once each. Writes one sample a second to `samples_to` (JSON) and
    returns RSS after the first tenth of the tasks and at the end, and the
    descriptor range after the first tenth."""
    fake = Fake(fake_bin, activity_tasks=n // 2, messages=n - n // 2, extra=LONG_FAULTS)
    samples = []
    try:
        launched = c.start("long", fake, n)
        if launched is None:
            return None
        proc, _ = launched
        try:
            wait_until(lambda: started(fake), 60, f"{c.name}'s first poll", step=0.01, proc=proc)
            t0, cpu0 = time.monotonic(), cpu_seconds(proc.pid)
            while True:
                done = fake.stats()["completed"]
                samples.append({"secs": round(time.monotonic() - t0, 2), "completed": done,
                                "rss_kib": memory_kib(proc.pid, "VmRSS"), "fds": fds(proc.pid)})
                if done >= n:
                    break
                if proc.poll() is not None or time.monotonic() - t0 > 300 + n / 2000:
                    raise SystemExit(f"{c.name} long run: stopped at {done} of {n}")
                time.sleep(1)
            t1, cpu1 = time.monotonic(), cpu_seconds(proc.pid)
        finally:
            exit_code = stop(proc, gently=True)
            with open(samples_to, "w") as f:
                json.dump({"n": n, "faults": LONG_FAULTS, "samples": samples}, f)
        s = fake.stats()
    finally:
        fake.stop()
    if s["completed"] != n or s["duplicates"] or s["unknown_tokens"] or exit_code != 0:
        raise SystemExit(f"{c.name} long run: not exactly once or unclean exit: {s}, exit {exit_code}")
    tenth = next(x for x in samples if x["completed"] >= n // 10)
    after = [x for x in samples if x["completed"] >= n // 10]
    end = samples[-1]
    return {"n": n, "secs": t1 - t0, "tasks_per_sec": n / (t1 - t0), "cpu_us_per_task": (cpu1 - cpu0) / n * 1e6,
            "rss_mib_after_first_tenth": tenth["rss_kib"] / 1024, "rss_mib_end": end["rss_kib"] / 1024,
            "rss_end_vs_first_tenth_pct": (end["rss_kib"] / tenth["rss_kib"] - 1) * 100,
            "rss_mib_max_after_first_tenth": max(x["rss_kib"] for x in after) / 1024,
            "fds_min": min(x["fds"] for x in after), "fds_max": max(x["fds"] for x in after)}


# --- the run -----------------------------------------------------------------------

# For each scenario, the figure its ratios are taken on (higher is better?).
RATIO_ON = {"1": ("cpu_us_per_task", False), "2": ("cpu_us_per_task", False), "3a": ("cpu_us_per_keepalive", False),
            "3b": ("cpu_us_per_keepalive", False)}
SCENARIOS = {"1": "activity tasks, echo", "2": "SQS callbacks, echo",
             "2d": "Lambda durable callbacks over SQS, echo (sfn-worker only: no peer serves them)",
             "1l": "activity tasks, echo, with the task ledger (sfn-worker only; compare with 1)",
             "2l": "SQS callbacks, echo, with the task ledger (sfn-worker only; compare with 2)",
             "3a": "held with heartbeats, activity",
             "3b": "held with heartbeats and visibility, SQS", "4": "idle, 4 + 4 bindings",
             "5": "SQS callbacks through fault profiles (sfn-worker only), 256 at once, 2 ms latency",
             "5h": "SQS tasks held 15 s through fault profiles (sfn-worker only): no lapse, no timeout",
             "L": "long run, activities and SQS at once, 2% 500s + 2% throttles (sfn-worker only): "
                  "RSS and descriptors every second"}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--short", action="store_true", help="CI mode: small numbers, debug build")
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--n", type=int, default=None, help="scenario 1/2 size for sfn-worker (default 100,000)")
    p.add_argument("--window", type=float, default=None, help="scenario 3 measuring window, s (default 60)")
    p.add_argument("--only", default=None, help="comma-separated contenders")
    p.add_argument("--scenarios", default="1,2,2d,1l,2l,3a,3b,4,5,5h,L")
    p.add_argument("--rate", type=int, default=None,
                   help="scenarios 1, 2, 2d: offer this many tasks per second (n = rate x window) instead of "
                        "all at once; for requests per task below saturation")
    p.add_argument("--profiles", default=",".join(FAULT_PROFILES), help="scenario 5/5h fault profiles")
    p.add_argument("--held", default=None,
                   help="scenario 3 sizes for sfn-worker, comma-separated (growth: 1000,10000,100000); "
                        "default 10,000 (--short: 100,200)")
    p.add_argument("--long-n", type=int, default=None, help="scenario L's tasks (default 10,000,000)")
    p.add_argument("--samples", default=os.path.join(tempfile.gettempdir(), "sfn-bench-long.json"),
                   help="scenario L writes its per-second samples here (bench/plot_long.py draws them)")
    p.add_argument("--json", help="also write the results here")
    a = p.parse_args()
    profile = "debug" if a.short else "release"
    n = a.n or (2000 if a.short else 100_000)
    window = a.window or (3 if a.short else 60)
    idle_window = 2 if a.short else 10
    bins = build(profile)
    missing = install_peers()
    workdir = tempfile.mkdtemp(prefix="sfn-bench-")
    wanted = set(a.only.split(",")) if a.only else None
    contenders = [cls(bins, workdir) for cls in CONTENDERS
                  if (wanted is None or cls.name in wanted) and cls.name not in missing]
    for name, why in missing.items():
        log(f"!!! {name} not run: {why}")
    scenarios = a.scenarios.split(",")
    held_n = (lambda c: min(c.held, 200)) if a.short else (lambda c: c.held)

    rate = a.rate
    # At an offered rate, every contender gets the same n: rate x window.
    sized = (lambda c: int(rate * window)) if rate else (lambda c: max(50, int(n * c.share)))
    profiles = a.profiles.split(",")
    fault_n = {"bucket": 300 if a.short else 8000}

    def job(key, c):
        if key == "1":
            return throughput(c, bins["fake-aws"], "activity", sized(c), rate=rate)
        if key == "2":
            return throughput(c, bins["fake-aws"], "sqs", sized(c), rate=rate)
        if key == "2d":
            if c.name != "sfn-worker":
                return None
            return throughput(c, bins["fake-aws"], "durable", int(rate * window) if rate else n, rate=rate)
        if key in ("1l", "2l"):
            # The task ledger's cost: scenario 1 / 2 with ledger = true
            # (claim and settle in the fake's DynamoDB, two calls a task).
            if c.name != "sfn-worker":
                return None
            source = "activity-ledger" if key == "1l" else "sqs-ledger"
            return throughput(c, bins["fake-aws"], source, sized(c), rate=rate)
        if key == "5":
            if c.name != "sfn-worker":
                return None
            out = {}
            for profile in profiles:
                size = fault_n.get(profile, 1000 if a.short else 100_000)
                out[profile] = throughput(c, bins["fake-aws"], "sqs", size, extra=FAULT_LATENCY + FAULT_PROFILES[profile],
                                          sample_at=10 if profile == "bucket" else None)
            return out
        if key == "5h":
            if c.name != "sfn-worker":
                return None
            return {profile: held_through_faults(c, bins["fake-aws"], profile, 64 if a.short else 512)
                    for profile in profiles}
        if key == "L":
            if c.name != "sfn-worker":
                return None
            return long_run(c, bins["fake-aws"], a.long_n or (20_000 if a.short else 10_000_000), a.samples)
        if key in ("3a", "3b"):
            if not c.held:
                return None
            source = "activity" if key == "3a" else "sqs"
            sizes = a.held or ("100,200" if a.short else None)
            if sizes and c.name == "sfn-worker":
                return {str(size): held(c, bins["fake-aws"], source, size, window)
                        for size in map(int, sizes.split(","))}
            return held(c, bins["fake-aws"], source, held_n(c), window)
        return idle(c, bins["fake-aws"], idle_window)

    # runs[key][contender] = [result per run]; ratios[key][contender] = [ratio per run]
    runs, ratios = {}, {}
    for r in range(a.runs):
        for key in scenarios:
            base = None
            for c in contenders:
                result = job(key, c)
                if result is None:
                    continue
                # Scenario 5's profiles are contenders of their own in the table.
                grouped = key in ("5", "5h") or (key in ("3a", "3b") and "in_flight" not in result)
                named = ({f"{c.name} [{p}]": r for p, r in result.items()} if grouped else {c.name: result})
                for name, res in named.items():
                    log(f"run {r + 1} scenario {key} {name}: "
                        f"{json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in res.items()})}")
                    runs.setdefault(key, {}).setdefault(name, []).append(res)
                if key in ("3a", "3b") and grouped and c.name == "sfn-worker":
                    # Peers are compared with sfn-worker's largest size.
                    base = result[max(result, key=int)][RATIO_ON[key][0]]
                if grouped:
                    continue
                if key in RATIO_ON:
                    figure, _ = RATIO_ON[key]
                    if c.name == "sfn-worker":
                        base = result[figure]
                    elif base:
                        ratios.setdefault(key, {}).setdefault(c.name, []).append(result[figure] / base)

    results = {key: {name: {k: statistics.median(x[k] for x in rs) for k in rs[0] if not isinstance(rs[0][k], dict)}
                     for name, rs in per.items()}
               for key, per in runs.items()}
    # Calls per task by operation: medians over the runs.
    calls = {key: {name: {op: statistics.median(x["calls_per_task"].get(op, 0) for x in rs)
                          for op in rs[0]["calls_per_task"]}
                   for name, rs in per.items() if "calls_per_task" in rs[0]}
             for key, per in runs.items()}
    for key, per in results.items():
        for name, r in per.items():
            if key == "5" and "tasks_per_sec" in r and f"sfn-worker [none]" in per:
                r["vs_fault_free_pct"] = r["tasks_per_sec"] / per["sfn-worker [none]"]["tasks_per_sec"] * 100
    ratio_medians = {key: {name: statistics.median(v) for name, v in per.items()} for key, per in ratios.items()}
    print(f"\n{profile} build, medians of {a.runs} run(s); 'x' = the contender's figure over sfn-worker's, "
          f"taken pair by pair in each run (CPU per task or per keep-alive call: higher is worse)")
    for key in scenarios:
        if key not in results:
            continue
        print(f"\nscenario {key}: {SCENARIOS[key]}")
        for name, r in results[key].items():
            ratio = ratio_medians.get(key, {}).get(name)
            extra = f"  [{ratio:.2f}x]" if ratio else ""
            print(f"  {name:32s} " + ", ".join(f"{k} {v:,.3g}" if abs(v) < 10 else f"{k} {v:,.1f}"
                                                 for k, v in r.items()) + extra)
            if calls.get(key, {}).get(name):
                print(f"  {'':32s} requests per task: "
                      + ", ".join(f"{op} {v:.3f}" for op, v in calls[key][name].items()))
    for name, why in missing.items():
        print(f"\n!!! {name} was not run: {why}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"profile": profile, "runs": a.runs, "n": n, "window_secs": window,
                       "machine": {"cpus": os.cpu_count(), "kernel": platform.release(),
                                   "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                                                if l.startswith("model name")), "?")},
                       "versions": versions(), "settings": {c.name: c.settings for c in contenders},
                       "rate": rate, "results": results, "calls_per_task": calls, "ratios": ratio_medians, "per_run": runs, "per_run_ratios": ratios,
                       "not_run": missing}, f, indent=2)
    if a.short:
        if missing:
            raise SystemExit("benchmark short mode: some contenders could not be installed (above)")
        print("benchmark short mode: every contender ran every scenario it supports; "
              "every task completed exactly once")


if __name__ == "__main__":
    main()
