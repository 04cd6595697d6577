#!/usr/bin/env python3
"""The deployment, run for real against LocalStack.

    deploy-live.py pod   the Helm chart's ConfigMap + Deployment under
                         `podman kube play` (helm/sfn-worker/ci/live-values.yaml)
    deploy-live.py ecs   deploy/ecs/task-definition.json checked against the
                         ECS API's own model (botocore's RegisterTaskDefinition
                         input shape), then its container definition run under
                         podman the way the ECS agent runs it
    deploy-live.py all   both, each with its control

Each run: the worker becomes ready and its health checks pass as its
orchestrator runs them (the pod's probes as the kubelet runs them: an exec
probe's argv in the container with no shell; the task definition's
healthCheck as podman runs it); executions of an activity state machine and
of an SQS-callback state machine succeed; /metrics answers; then executions
are started, the worker is stopped while it runs them (SIGTERM, then the grace
period the deployment gives: terminationGracePeriodSeconds / stopTimeout,
then SIGKILL) and must exit 0 within it, with every one of them SUCCEEDED and
no other worker running: nothing lost at the stop.

Controls (run unless --no-controls): a values file pointing the worker at no
endpoint is caught (never ready, and its readiness probe fails); a stop cut
short of the grace period is caught (exit 137, and the executions it held do
not succeed); broken task definitions (a misspelt field, a wrong type, a
stopTimeout over ECS's 120 s or under what the worker's drain needs, a
Fargate size that does not exist, a health-check interval out of range) are
refused by the model check, each naming the field.

Needs: LocalStack (scripts/localstack.sh start), the image (scripts/image.sh,
IMAGE, default localhost/sfn-worker:ci), helm, podman and boto3 from
scripts/deploy-tools.sh (run this with that PATH).
"""

from __future__ import annotations

import argparse
import copy
import http.server
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import urllib.request
from pathlib import Path

import boto3
import botocore.exceptions
import yaml
from botocore.config import Config
from botocore.validate import ParamValidator

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm/sfn-worker"
VALUES = CHART / "ci/live-values.yaml"
TASK_DEF = ROOT / "deploy/ecs/task-definition.json"
MACHINES = ROOT / "examples/state-machines"
ENDPOINT = os.environ.get("LOCALSTACK_ENDPOINT", "http://127.0.0.1:4566")
IMAGE = os.environ.get("IMAGE", "localhost/sfn-worker:ci")
ACCOUNT = "000000000000"  # LocalStack's
# Each run's own activity, queue and state machines: LocalStack keeps an
# activity's queued tasks across runs, and a stopped execution's task stays
# queued, so a name used twice would hand one run another's tasks.
RUN = f"{int(time.time()) % 100000}-{os.getpid()}"
RUNS = iter(range(1, 1000))  # and each of its runs, its own again
# Each task takes this long (echo's delay_ms; the ECS run's http service):
# long enough that all of a batch is held at once, and still in hand when a
# stop lands, on a loaded 2-core machine.
TASK_SECS = 12
# What the README promises a stop waits for on top of the drain: an open
# GetActivityTask returns within 60 s (65 with the network).
POLL_RETURN_SECS = 65
# podman on this kind of machine: crun fails on its hybrid cgroups, and the
# default ulimits are over what the sandbox allows.
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{events}"
"""


def log(msg: str) -> None:
    print(f"[deploy-live] {msg}", file=sys.stderr, flush=True)


class Failed(Exception):
    """A check that did not hold: the message says which."""


# ---- LocalStack: the activity, the queue, the state machines, executions ----


class Aws:
    def __init__(self) -> None:
        kw = dict(
            endpoint_url=ENDPOINT,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
            config=Config(retries={"max_attempts": 5}),
        )
        self.sfn = boto3.client("stepfunctions", **kw)
        self.sqs = boto3.client("sqs", **kw)

    def setup(self, name: str, heartbeat_secs: int) -> dict:
        """An activity `name` and a queue `name`-callbacks, and a state machine
        for each (the README's examples, with HeartbeatSeconds to match the
        worker's configuration). Returns their ARNs and the queue's URL."""
        activity = self.sfn.create_activity(name=name)["activityArn"]
        qname = f"{name}-callbacks"
        queue = self.sqs.create_queue(QueueName=qname, Attributes={"VisibilityTimeout": "30"})["QueueUrl"]
        self.sqs.purge_queue(QueueUrl=queue)
        # The worker reaches LocalStack as localhost; Step Functions sends to
        # the queue by its URL, which must name the same queue.
        queue = f"http://localhost:4566/{ACCOUNT}/{qname}"
        machines = {}
        for kind, file, placeholder, value in (
            ("activity", "activity.asl.json", "${ActivityArn}", activity),
            ("queue", "sqs-callback.asl.json", "${QueueUrl}", queue),
        ):
            definition = json.loads((MACHINES / file).read_text().replace(placeholder, value))
            definition["States"]["ProcessOrder"]["HeartbeatSeconds"] = heartbeat_secs
            definition = json.dumps(definition)
            sm_name = f"{name}-{kind}"
            arn = f"arn:aws:states:us-east-1:{ACCOUNT}:stateMachine:{sm_name}"
            try:
                self.sfn.delete_state_machine(stateMachineArn=arn)
            except self.sfn.exceptions.ClientError:
                pass
            machines[kind] = self.sfn.create_state_machine(
                name=sm_name, definition=definition, roleArn=f"arn:aws:iam::{ACCOUNT}:role/sfn"
            )["stateMachineArn"]
        return {"activity": activity, "queue": queue, "machines": machines}

    def start(self, machines: dict, per_source: int, tag: str) -> list[str]:
        arns = []
        for kind, machine in machines.items():
            for i in range(per_source):
                arns.append(
                    self.sfn.start_execution(
                        stateMachineArn=machine,
                        name=f"{tag}-{kind}-{i}-{time.time_ns()}",
                        input=json.dumps({"order": i, "tag": tag}),
                    )["executionArn"]
                )
        return arns

    def stop_running(self, machines: dict) -> None:
        """Executions a failed run or a control left running: stopped (a
        clean-up: it never hides the run's own error)."""
        try:
            for machine in machines.values():
                pages = self.sfn.get_paginator("list_executions").paginate(stateMachineArn=machine, statusFilter="RUNNING")
                for page in pages:
                    for e in page["executions"]:
                        self.sfn.stop_execution(executionArn=e["executionArn"])
        except Exception as e:  # noqa: BLE001 - clean-up only
            log(f"could not stop leftover executions: {e}")

    def statuses(self, arns: list[str]) -> dict[str, str]:
        return {a: self.sfn.describe_execution(executionArn=a)["status"] for a in arns}

    def wait_done(self, arns: list[str], secs: float) -> dict[str, str]:
        """Statuses once none is RUNNING, or when `secs` run out."""
        deadline = time.monotonic() + secs
        while True:
            st = self.statuses(arns)
            if all(s != "RUNNING" for s in st.values()) or time.monotonic() > deadline:
                return st
            time.sleep(0.5)


def expect_all_succeeded(aws: Aws, statuses: dict[str, str], what: str) -> None:
    """Every execution SUCCEEDED, its task scheduled once and never failed or
    timed out: a task dropped at the stop and retried onto a poll still open
    would otherwise end SUCCEEDED too (run twice)."""
    bad = {a.rsplit(":", 1)[-1]: s for a, s in statuses.items() if s != "SUCCEEDED"}
    if bad:
        raise Failed(f"{what}: {len(bad)} of {len(statuses)} executions did not succeed: {bad}")
    for arn in statuses:
        kinds = [
            e["type"]
            for page in aws.sfn.get_paginator("get_execution_history").paginate(executionArn=arn)
            for e in page["events"]
        ]
        scheduled = sum(k in ("ActivityScheduled", "TaskScheduled") for k in kinds)
        faults = [k for k in kinds if k.endswith(("Failed", "TimedOut"))]
        if scheduled != 1 or faults:
            raise Failed(f"{what}: {arn.rsplit(':', 1)[-1]} succeeded after {scheduled} task(s) scheduled and {faults}")
    log(f"{what}: all {len(statuses)} executions SUCCEEDED, each task scheduled once, none failed")


# ---- the worker's metrics endpoint, from the host ----


def metrics(port: int) -> dict[str, float]:
    """Sum of each sfn_worker_* series by name and (for some) outcome."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3).read().decode()
    sums: dict[str, float] = {}
    for line in text.splitlines():
        m = re.match(r"(sfn_worker_[a-z_]+)(\{[^}]*\})? ([0-9.e+-]+|NaN)$", line)
        if m and m.group(3) != "NaN":
            sums[m.group(1)] = sums.get(m.group(1), 0.0) + float(m.group(3))
    return sums


def ready(port: int) -> bool:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2).status == 200
    except OSError:
        return False


def wait_ready(port: int, secs: float, alive, exited) -> None:
    deadline = time.monotonic() + secs
    while not ready(port):
        if not alive():
            raise Failed(f"the worker exited before it was ready: {exited()}")
        if time.monotonic() > deadline:
            raise Failed(f"/readyz on port {port} not 200 within {secs:.0f} s")
        time.sleep(0.3)


def try_metrics(port: int) -> dict[str, float]:
    try:
        return metrics(port)
    except OSError:
        return {}


def wait_in_flight(port: int, want: int, completed_before: float) -> None:
    """Until the worker holds `want` tasks at once: the stop then lands
    mid-work. Given up when one of them ends first (it never will then)."""
    deadline = time.monotonic() + TASK_SECS
    while True:
        seen = try_metrics(port)
        held = seen.get("sfn_worker_tasks_in_flight", 0)
        if held >= want:
            log(f"{held:.0f} tasks in flight")
            return
        if seen.get("sfn_worker_tasks_completed_total", 0) > completed_before or time.monotonic() > deadline:
            raise Failed(f"only {held:.0f} of {want} tasks in flight at once (each takes {TASK_SECS} s)")
        time.sleep(0.2)


def wait_completed(port: int, want: int) -> float:
    """The completed count once it reaches `want` (the worker counts a task
    once its report is sent and its lease ended, just after the execution
    shows SUCCEEDED), or what it is 5 s later."""
    deadline = time.monotonic() + 5
    while True:
        done = try_metrics(port).get("sfn_worker_tasks_completed_total", 0)
        if done >= want or time.monotonic() > deadline:
            return done
        time.sleep(0.2)


def free_port() -> int:
    """A port nothing listens on: the containers share the host's network."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- podman ----


class Podman:
    def __init__(self, work: Path) -> None:
        conf = work / "containers.conf"
        # Events in a file: a container's exit code outlives its removal
        # there (`kube down` removes it), and no journald runs here.
        conf.write_text(CONTAINERS_CONF.format(events=work / "events.log"))
        self.env = {**os.environ, "CONTAINERS_CONF": str(conf)}

    def __call__(self, *args: str, check: bool = True, timeout: float = 300) -> str:
        r = subprocess.run(["podman", *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise Failed(f"podman {' '.join(args[:3])}: exit {r.returncode}: {r.stderr.strip()[-2000:]}")
        return r.stdout.strip()

    def logs(self, container: str) -> str:
        """The container's last lines (the worker logs to stderr)."""
        r = subprocess.run(["podman", "logs", "--tail", "30", container], env=self.env, capture_output=True, text=True)
        return r.stdout + r.stderr

    def inspect(self, container: str, fmt: str) -> str:
        return self("inspect", "--format", fmt, container)

    def exited(self, container: str) -> str:
        """How a container that stopped ended: its exit code and last line."""
        code = self("inspect", "--format", "{{.State.ExitCode}}", container, check=False)
        lines = self.logs(container).strip().splitlines()
        return f"exit {code}: {lines[-1] if lines else ''}"

    def running(self, container: str) -> bool:
        return self("inspect", "--format", "{{.State.Running}}", container, check=False) == "true"

    def healthcheck(self, container: str) -> tuple[bool, str]:
        """Run podman's health check of the container once, as podman does on
        its timer (its timers need systemd, absent here)."""
        r = subprocess.run(
            ["podman", "healthcheck", "run", container], env=self.env, capture_output=True, text=True, timeout=60
        )
        status = self.inspect(container, "{{.State.Health.Status}}")
        return r.returncode == 0, f"{status} {(r.stdout + r.stderr).strip()[-300:]}".strip()

    def wait_healthy(self, container: str, secs: float) -> None:
        deadline = time.monotonic() + secs
        while True:
            ok, said = self.healthcheck(container)
            if ok:
                log(f"podman's health check passes: {said}")
                return
            if time.monotonic() > deadline:
                raise Failed(f"podman's health check never passed in {secs:.0f} s: {said}")
            time.sleep(1)

    def stop_timed(self, container: str, stop: list[str], grace: int) -> tuple[int, float]:
        """Run the stop command; return the container's exit code (from its
        `died` event: `kube down` removes the container) and how long the
        stop took."""
        cid = self.inspect(container, "{{.Id}}")
        t0 = time.monotonic()
        self(*stop, timeout=grace + 60)
        took = time.monotonic() - t0
        deadline = time.monotonic() + 30
        while True:
            died = self("events", "--stream=false", "--since", "10m", "--filter", f"container={cid}",
                        "--filter", "event=died", "--format", "{{.ContainerExitCode}}", check=False)
            if died:
                return int(died.splitlines()[-1]), took
            if time.monotonic() > deadline:
                raise Failed(f"no exit recorded for {container} 30 s after `podman {' '.join(stop[:2])}`")
            time.sleep(0.5)


# ---- one run: serve, then stop mid-work ----


def serve_and_stop(aws: Aws, res: dict, pm: Podman, container: str, port: int, health, stop, grace: int, need: int,
                   ready_secs: float = 90) -> None:
    """The checks both deployments share. `health()` runs the deployment's
    health checks as its orchestrator does; `stop(grace)` stops the worker the
    way its orchestrator does; `need` is what the worker says a stop needs
    (shutdown_grace_secs + cancel_grace_secs + 65)."""
    wait_ready(port, ready_secs, lambda: pm.running(container), lambda: pm.exited(container))
    log(f"ready on :{port}")
    health()

    first = aws.start(res["machines"], 3, "served")
    expect_all_succeeded(aws, aws.wait_done(first, 90), "served (activity and SQS callback)")
    done = wait_completed(port, len(first))
    if done != len(first):
        raise Failed(f"/metrics counts {done:.0f} completed tasks; {len(first)} executions succeeded")
    log(f"/metrics answered: {done:.0f} tasks completed, ready={metrics(port).get('sfn_worker_ready')}")

    # Work in hand at the stop (each task takes TASK_SECS).
    held = aws.start(res["machines"], 4, "held")
    wait_in_flight(port, len(held), done)
    log(f"stopping with {len(held)} tasks in hand (grace {grace} s; the worker needs {need} s)")
    code, took = stop(grace)
    log(f"exited {code} after {took:.1f} s")
    # No worker runs now: what succeeds, the stopped one finished.
    statuses = aws.wait_done(held, 15)
    problems = []
    if code != 0:
        problems.append(f"exit {code} after {took:.1f} s (the grace period was {grace} s)")
    elif took > grace:
        problems.append(f"the stop took {took:.1f} s, over the grace period ({grace} s)")
    try:
        expect_all_succeeded(aws, statuses, "held at the stop")
    except Failed as e:
        problems.append(str(e))
    if problems:
        raise Failed("; ".join(problems))


# ---- the chart's pod under podman kube play ----


def render_pod(work: Path, overlay: dict, sets: list[str]) -> tuple[Path, dict]:
    """The chart's ConfigMap and Deployment, rendered with the live values,
    this run's `overlay` and `sets`, as podman kube play takes them."""
    (work / "overlay.yaml").write_text(yaml.safe_dump(overlay))
    args = ["helm", "template", "sfn-worker", str(CHART), "-f", str(VALUES), "-f", str(work / "overlay.yaml")]
    for s in sets:
        args += ["--set", s]
    out = subprocess.run(args, capture_output=True, text=True)
    if out.returncode != 0:
        raise Failed(f"helm template: {out.stderr.strip()}")
    docs = [d for d in yaml.safe_load_all(out.stdout) if d and d["kind"] in ("ConfigMap", "Deployment")]
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    for c in deployment["spec"]["template"]["spec"]["containers"]:
        # The pod shares the host's network (no CNI here): nothing to map.
        c.pop("ports", None)
        if c["imagePullPolicy"] != "Never":
            raise Failed(f"{VALUES}: image.pullPolicy must be Never (the image is local)")
    path = work / "pod.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    return path, deployment


def probe_like_kubelet(pm: Podman, container: str, spec: dict, port: int) -> None:
    """The pod's liveness and readiness probes, run once each the way the
    kubelet runs them: an exec probe's argv inside the container with no
    shell (CRI ExecSync), an httpGet probe as a GET from the node."""
    for kind in ("livenessProbe", "readinessProbe"):
        probe = spec[kind]
        if "exec" in probe:
            argv = probe["exec"]["command"]
            r = subprocess.run(["podman", "exec", container, *argv], env=pm.env, capture_output=True, text=True,
                               timeout=probe.get("timeoutSeconds", 1) + 10)
            ok, how = r.returncode == 0, f"exec {argv}: exit {r.returncode} {r.stderr.strip()}"
        else:
            get = probe["httpGet"]
            url = f"http://127.0.0.1:{port}{get['path']}"
            try:
                ok = urllib.request.urlopen(url, timeout=probe.get("timeoutSeconds", 1)).status < 400
            except OSError as e:
                ok = False
            how = f"httpGet {url}"
        if not ok:
            raise Failed(f"{kind} fails as the kubelet runs it: {how}")
        log(f"{kind} passes as the kubelet runs it: {how}")


def run_pod(aws: Aws, work: Path, sets: list[str] = (), kube_down: bool = False, ready_secs: float = 90) -> None:
    """The chart's pod, served and stopped. `kube_down`: stopped by `podman
    kube down` instead of as Kubernetes stops a pod (a control)."""
    values = yaml.safe_load(VALUES.read_text())
    # The examples' HeartbeatSeconds, 5: the live values beat every 2 s.
    res = aws.setup(f"sfn-worker-live-pod-{RUN}-{next(RUNS)}", heartbeat_secs=5)
    port = free_port()
    # This run's activity, queue and port, in the live values' bindings.
    (activity,), (queue,) = values["config"]["activity"], values["config"]["queue"]
    overlay = {
        "metrics": {"port": port},
        "image": dict(zip(("repository", "tag"), IMAGE.rsplit(":", 1))),
        "config": {
            "activity": [{**activity, "arn": res["activity"], "params": {"delay_ms": TASK_SECS * 1000}}],
            "queue": [{**queue, "url": res["queue"], "params": {"delay_ms": TASK_SECS * 1000}}],
        },
    }
    pm = Podman(work)
    manifest, deployment = render_pod(work, overlay, list(sets))
    spec = deployment["spec"]["template"]["spec"]
    grace = int(spec["terminationGracePeriodSeconds"])
    w = values["config"]["worker"]
    need = int(w["shutdown_grace_secs"]) + int(w["cancel_grace_secs"]) + POLL_RETURN_SECS
    if grace < need:
        raise Failed(f"terminationGracePeriodSeconds {grace} is under the {need} s the worker's drain needs")
    # podman names a Deployment's pod <name>-pod-0 and its container
    # <pod>-<container>.
    pod = f"{deployment['metadata']['name']}-pod-0"
    container = f"{pod}-{spec['containers'][0]['name']}"
    try:
        pm("kube", "play", "--replace", "--network", "host", str(manifest))
        user = pm.inspect(container, "{{.Config.User}}")
        read_only = pm.inspect(container, "{{.HostConfig.ReadonlyRootfs}}")
        log(f"pod {pod}, container {container}: user {user}, read-only root {read_only}, "
            f"podman's stop timeout {pm.inspect(container, '{{.Config.StopTimeout}}')} s (not the pod's {grace} s)")
        if user.split(":")[0] != "65532" or read_only != "true":
            raise Failed(f"the pod's container runs as {user!r}, read-only root {read_only}: the chart sets 65532, true")

        def stop(grace: int) -> tuple[int, float]:
            if kube_down:
                return pm.stop_timed(container, ["kube", "down", str(manifest)], grace)
            # Kubernetes: SIGTERM, then terminationGracePeriodSeconds, then
            # SIGKILL. podman 4.3 gives a played pod's containers its own 10 s
            # stop timeout instead, and `podman kube down` kills at once (the
            # control shows it): hence `pod stop -t`.
            return pm.stop_timed(container, ["pod", "stop", "-t", str(grace), pod], grace)

        def health() -> None:
            probe_like_kubelet(pm, container, spec["containers"][0], port)
            # podman's own status: it turns every probe into `/bin/sh -c '... ||
            # exit 1'`, which no FROM scratch image can run. Reported only.
            ok, said = pm.healthcheck(container)
            log(f"podman's own health status (needs /bin/sh in the image): {said}")

        try:
            serve_and_stop(aws, res, pm, container, port, health, stop, grace, need, ready_secs)
        except Failed as e:
            if "/readyz" in str(e) and pm.running(container):
                # Not ready: the probes must say so too.
                try:
                    probe_like_kubelet(pm, container, spec["containers"][0], port)
                except Failed as probe:
                    e = Failed(f"{e}; {probe}")
            sys.stderr.write(pm.logs(container))
            raise e
    finally:
        pm("kube", "down", str(manifest), check=False)
        aws.stop_running(res["machines"])


# ---- the ECS task definition ----

# Bounds the ECS API reference states but botocore's model does not carry
# (RegisterTaskDefinition, ContainerDefinition, HealthCheck, Fargate task sizes).
FARGATE_MEMORY = {
    "256": {"512", "1024", "2048"},
    "512": {str(m) for m in range(1024, 4097, 1024)},
    "1024": {str(m) for m in range(2048, 8193, 1024)},
    "2048": {str(m) for m in range(4096, 16385, 1024)},
    "4096": {str(m) for m in range(8192, 30721, 1024)},
}


def worker_config(container: dict) -> str:
    env = {e["name"]: e["value"] for e in container.get("environment", [])}
    return env["SFN_WORKER_CONFIG_TOML"]


def validate_task_definition(task: dict) -> list[str]:
    """What ECS would refuse at RegisterTaskDefinition, or what would cut the
    worker's drain short. Empty when the definition is good."""
    model = boto3.session.Session().client("ecs", region_name="us-east-1").meta.service_model
    shape = model.operation_model("RegisterTaskDefinition").input_shape
    report = ParamValidator().validate(task, shape)
    errors = [line for line in report.generate_report().splitlines() if line] if report.has_errors() else []
    if errors:
        return errors
    if "FARGATE" in task.get("requiresCompatibilities", []):
        if task.get("networkMode") != "awsvpc":
            errors.append("networkMode: Fargate requires awsvpc")
        if task.get("memory") not in FARGATE_MEMORY.get(task.get("cpu"), set()):
            errors.append(f"cpu {task.get('cpu')} / memory {task.get('memory')}: not a Fargate task size")
    for c in task["containerDefinitions"]:
        where = f"containerDefinitions[{c['name']}]"
        stop = c.get("stopTimeout", 30)
        if not 2 <= stop <= 120:
            errors.append(f"{where}.stopTimeout: {stop}, ECS allows 2 to 120 s")
        h = c.get("healthCheck")
        if h:
            for key, lo, hi in (("interval", 5, 300), ("timeout", 2, 60), ("retries", 1, 10), ("startPeriod", 0, 300)):
                if key in h and not lo <= h[key] <= hi:
                    errors.append(f"{where}.healthCheck.{key}: {h[key]}, ECS allows {lo} to {hi}")
            if h["command"][0] not in ("CMD", "CMD-SHELL"):
                errors.append(f"{where}.healthCheck.command: starts with CMD or CMD-SHELL")
        try:
            w = tomllib.loads(worker_config(c)).get("worker", {})
        except (KeyError, tomllib.TOMLDecodeError) as e:
            errors.append(f"{where}.environment SFN_WORKER_CONFIG_TOML: {e}")
            continue
        need = w.get("shutdown_grace_secs", 30) + w.get("cancel_grace_secs", 5) + POLL_RETURN_SECS
        if stop < need:
            errors.append(
                f"{where}.stopTimeout: {stop} s, under the {need} s the worker's drain needs "
                "(shutdown_grace_secs + cancel_grace_secs + 65 for an open poll)"
            )
        if c.get("readonlyRootFilesystem") is not True or c.get("user") != "65532:65532":
            errors.append(f"{where}: runs as 65532:65532 with readonlyRootFilesystem (the image is built for it)")
    return errors


def ecs_controls(task: dict) -> None:
    """Each broken copy must be refused with exactly one error: the one its
    break should cause (botocore's model for the first three, ECS's
    documented bounds and the worker's drain for the rest)."""
    broken = []

    def variant(why: str, expect: str, edit) -> None:
        t = copy.deepcopy(task)
        edit(t, t["containerDefinitions"][0])
        broken.append((why, expect, t))

    def rename_env_key(t, c):
        c["environment"][1]["key"] = c["environment"][1].pop("name")

    variant("a misspelt field", 'Unknown parameter in containerDefinitions[0]: "stopTimeOut"',
            lambda t, c: c.__setitem__("stopTimeOut", c.pop("stopTimeout")))
    variant("a number where ECS takes a string", "Invalid type for parameter cpu, value: 256",
            lambda t, c: t.__setitem__("cpu", 256))
    variant("an environment entry with `key` for `name`",
            'Unknown parameter in containerDefinitions[0].environment[1]: "key"', rename_env_key)
    variant("stopTimeout over ECS's limit", "stopTimeout: 300, ECS allows 2 to 120 s",
            lambda t, c: c.__setitem__("stopTimeout", 300))
    variant("stopTimeout under the drain", "stopTimeout: 30 s, under the 115 s",
            lambda t, c: c.__setitem__("stopTimeout", 30))
    variant("a Fargate size that does not exist", "cpu 256 / memory 4096: not a Fargate task size",
            lambda t, c: t.__setitem__("memory", "4096"))
    variant("a health check interval under 5 s", "healthCheck.interval: 1, ECS allows 5 to 300",
            lambda t, c: c["healthCheck"].__setitem__("interval", 1))
    for why, expect, t in broken:
        errors = validate_task_definition(t)
        if len(errors) != 1 or expect not in errors[0]:
            raise Failed(f"control: {why}: expected one error saying {expect!r}, got {errors}")
        log(f"control: refused {why}: {errors[0][:160]}")


class Resizer(http.server.BaseHTTPRequestHandler):
    """The http handler's service, standing in for localhost:8080/resize:
    answers only with the secret ECS injects as API_TOKEN."""

    token = ""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Authorization") != Resizer.token:
            self.send_response(401)
            self.end_headers()
            return
        time.sleep(TASK_SECS)  # work in hand at the stop
        out = json.dumps({"resized": json.loads(body or b"null")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args) -> None:
        pass


def run_ecs(aws: Aws, work: Path, broken_command: bool = False) -> None:
    """The task definition's container, served and stopped as ECS does.
    `broken_command`: its command pointed at a config file the container does
    not have (a definition the model accepts; the run must catch it)."""
    task = json.loads(TASK_DEF.read_text())
    c = task["containerDefinitions"][0]
    if broken_command:
        c["command"] = ["run", "--config", "/etc/sfn-worker/config.toml"]
    # The task definition beats activities every 20 s (callbacks not at
    # all): its states would have HeartbeatSeconds 60 (three beats).
    res = aws.setup(f"sfn-worker-live-ecs-{RUN}-{next(RUNS)}", heartbeat_secs=60)

    # The service behind the http handler, on a free port.
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Resizer)
    Resizer.token = f"Bearer live-{RUN}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = free_port()

    # The task definition's configuration, pointed at LocalStack: the
    # endpoint, the activity and queue just made, the local service, a free
    # metrics port (and the health check's URL with it). Each edit must
    # match, or the definition changed under this script.
    config = worker_config(c)
    for pattern, new in (
        (r"\[aws\]\n", '[aws]\nendpoint_url = "http://localhost:4566"\n'),
        (r'arn = "arn:aws:states:[^"]*"', f'arn = "{res["activity"]}"'),
        (r'url = "https://sqs[^"]*"', f'url = "{res["queue"]}"'),
        (r"http://localhost:8080/resize", f"http://127.0.0.1:{server.server_port}/resize"),
        (r'handler = "echo"', f'handler = "echo"\nparams = {{ delay_ms = {TASK_SECS * 1000} }}'),
        (r'metrics_addr = "0\.0\.0\.0:9464"', f'metrics_addr = "0.0.0.0:{port}"'),
    ):
        config, n = re.subn(pattern, lambda _: new, config, count=1)
        if n != 1:
            raise Failed(f"{TASK_DEF}: its SFN_WORKER_CONFIG_TOML has no {pattern!r} to point at LocalStack")
    h = c["healthCheck"]
    h["command"] = [part.replace("127.0.0.1:9464", f"127.0.0.1:{port}") for part in h["command"]]
    w = tomllib.loads(config)["worker"]
    need = w.get("shutdown_grace_secs", 30) + w.get("cancel_grace_secs", 5) + POLL_RETURN_SECS

    pm = Podman(work)
    container = res["activity"].rsplit(":", 1)[-1]
    # As the ECS agent creates the container (awsvpc: the task's own network
    # namespace; here the host's, as no CNI runs).
    args = ["run", "-d", "--name", container, "--network", "host"]
    args += ["--user", c["user"], "--stop-timeout", str(c["stopTimeout"])]
    if c.get("readonlyRootFilesystem"):
        args.append("--read-only")
    for cap in c.get("linuxParameters", {}).get("capabilities", {}).get("drop", []):
        args += ["--cap-drop", cap]
    if c.get("linuxParameters", {}).get("initProcessEnabled"):
        args.append("--init")
    env = {e["name"]: e["value"] for e in c["environment"]}
    env["SFN_WORKER_CONFIG_TOML"] = config
    # Secrets: ECS resolves valueFrom and injects the value as a variable.
    for secret in c.get("secrets", []):
        env[secret["name"]] = Resizer.token if secret["name"] == "API_TOKEN" else "secret"
    # The task role's credentials, as the agent's credential endpoint would.
    env.update(AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test")
    for k, v in env.items():
        args += ["-e", f"{k}={v}"]
    # CMD: an argv, run without a shell (podman takes it as a JSON array);
    # CMD-SHELL: one string for /bin/sh, which the FROM scratch image lacks.
    cmd = json.dumps(h["command"][1:]) if h["command"][0] == "CMD" else " ".join(h["command"][1:])
    args += ["--health-cmd", cmd, "--health-interval", f"{h['interval']}s",
             "--health-timeout", f"{h['timeout']}s", "--health-retries", str(h["retries"]),
             "--health-start-period", f"{h['startPeriod']}s"]
    args += ["--cpus", str(int(task["cpu"]) / 1024), "--memory", f"{task['memory']}m"]
    args += [IMAGE, *c["command"]]
    try:
        pm(*args)
        log(f"container {container}: user {c['user']}, read-only root, stopTimeout {c['stopTimeout']} s")

        def stop(grace: int) -> tuple[int, float]:
            # ECS StopTask: SIGTERM, then stopTimeout, then SIGKILL.
            return pm.stop_timed(container, ["stop", "-t", str(grace), container], grace)

        try:
            serve_and_stop(aws, res, pm, container, port, lambda: pm.wait_healthy(container, 30), stop,
                           int(c["stopTimeout"]), need)
        except Failed:
            sys.stderr.write(pm.logs(container))
            raise
    finally:
        pm("rm", "-f", "-t", "0", container, check=False)
        server.shutdown()
        aws.stop_running(res["machines"])


def check_ecs_model(controls: bool) -> None:
    task = json.loads(TASK_DEF.read_text())
    errors = validate_task_definition(task)
    if errors:
        raise Failed(f"{TASK_DEF}: " + "; ".join(errors))
    log(f"{TASK_DEF.name}: valid against botocore's ECS model and ECS's documented bounds")
    if controls:
        ecs_controls(task)


# ---- controls that must fail the run ----


def expect_caught(what: str, run, *expect: str) -> None:
    """The run must fail, for each of the reasons `expect` names."""
    try:
        run()
    except Failed as e:
        missing = [x for x in expect if x not in str(e)]
        if missing:
            raise Failed(f"control {what}: failed, but not for the reasons expected ({missing}): {e}")
        log(f"control {what}: caught: {e}")
        return
    raise Failed(f"control {what}: the run passed")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["pod", "ecs", "all"])
    ap.add_argument("--no-controls", action="store_true", help="skip the controls")
    a = ap.parse_args()
    controls = not a.no_controls

    # A CI timeout's SIGTERM still runs the clean-ups (pods, containers).
    def on_term(signum, _frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the clean-ups
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    aws = Aws()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            if a.what in ("pod", "all"):
                log("the chart's pod under podman kube play")
                run_pod(aws, work)
                if controls:
                    # A values file pointing the worker at nothing: never
                    # ready, and its readiness probe says so.
                    expect_caught("config.aws.endpoint_url pointing at nothing",
                                  lambda: run_pod(aws, work, ["config.aws.endpoint_url=http://localhost:9"], ready_secs=20),
                                  "not 200", "readinessProbe fails", "answered 503")
                    # podman's own stop of a played pod: no drain.
                    expect_caught("the pod stopped by podman kube down",
                                  lambda: run_pod(aws, work, kube_down=True), "exit 137", "did not succeed")
            if a.what in ("ecs", "all"):
                log("the ECS task definition: the API's model, then its container under podman")
                check_ecs_model(controls)
                run_ecs(aws, work)
                if controls:
                    expect_caught("a command reading a config file the container does not have",
                                  lambda: run_ecs(aws, work, broken_command=True),
                                  "exited before it was ready: exit 2", "/etc/sfn-worker/config.toml")
    except Failed as e:
        log(f"FAILED: {e}")
        return 1
    except (OSError, subprocess.SubprocessError, botocore.exceptions.BotoCoreError,
            botocore.exceptions.ClientError) as e:
        log(f"FAILED: {type(e).__name__}: {e}")
        return 1
    log("passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
