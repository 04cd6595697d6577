#!/usr/bin/env bash
# The live drill (issue 14): the shipped alerts and dashboard
# (helm/sfn-worker/files/{alerts.yaml,dashboard.json}) against a real
# Prometheus and a real Alertmanager, fed by the real sfn-worker serving
# bench's fake AWS backend (fake-aws).
#
#   scripts/drill.sh
#
# The unit tests (alerts.test.yaml, `promtool test rules`) check each rule's
# logic at its real durations. This drill checks the wiring: that the rules
# load, that the metric names and labels they use are the ones the worker
# exports, that an alert reaches Alertmanager with the labels routing needs,
# is notified (webhook) and resolves, and that every dashboard query returns
# data after a demo-sized run. To fit in about two minutes it runs a COPY of
# alerts.yaml with every duration (`for:`, range windows, subqueries,
# offsets) divided by DRILL_SCALE (default 30: 5m -> 10s, 10m -> 20s,
# 15m -> 30s), which keeps each rule's shape (its `for:` against its window).
# One exception: the worker's poll backoff (200 ms doubling to 30 s) is not
# scaled, so a window over failing polls keeps at least 30 s (at the real
# durations a backed-off poller fails five times and more in its 5m).
#
# Phases, each checked through Prometheus's and Alertmanager's HTTP APIs:
#   a  healthy run: a few thousand tasks (10% rejected by the handler, some
#      held with heartbeats, some malformed SQS messages); no alert fires
#      (SfnWorkerSlotsSaturated not for idle bindings either); the
#      saturation gauges: 0 to 1, above 0 while "slow" holds tasks, tasks
#      running over the worker's slots (and the binding's), 0 when idle
#   b  backend trouble: Step Functions throttles (SfnWorkerApiErrors reaches
#      Alertmanager and the webhook, then resolves once the backend is
#      healthy again); a worker stuck in start-up with no backend
#      (SfnWorkerNotReady fires, then resolves once it is ready); a stopped
#      backend (SfnWorkerPollsFailing for every binding; the worker stays
#      ready, SfnWorkerNotReady stays quiet)
#   d  dashboard: every panel query returns series; every metric name the
#      dashboard and the rules use is one the worker exports
#   c  killed worker: the target is down (up == 0), SfnWorkerDown fires
# Each alert reached is checked with its labels in Prometheus, active in
# Alertmanager with its annotations, and notified to the webhook.
#
# Checks a worker binary that predates a feature cannot make are SKIPPED,
# saying why (sfn_worker_ready exported as 0 during start-up, the saturation
# gauges); DRILL_STRICT=1 (CI) makes a skip fail the drill. Every other
# check fails it.
#
# Needs: python3, curl, and Debian's prometheus (2.42: prometheus, promtool)
# and prometheus-alertmanager (0.25: prometheus-alertmanager, amtool),
# installed here with apt-get when missing (as root). The binaries:
# SFN_WORKER_BIN (default target/debug/sfn-worker) and FAKE_AWS_BIN (default
# target/debug/fake-aws), built with cargo when missing, or always with
# DRILL_BUILD=1 (CI: a no-op when they are up to date); a binary older than
# the sources is used with a warning.
# DRILL_KEEP=1 keeps the work directory (configs, logs) for a look after;
# DRILL_ALERTS=FILE drills another rules file (a draft of alerts.yaml).
set -euo pipefail
cd "$(dirname "$0")/.."
STARTED=$(date +%s)
SCALE="${DRILL_SCALE:-30}"
SFN_WORKER_BIN="${SFN_WORKER_BIN:-target/debug/sfn-worker}"
FAKE_AWS_BIN="${FAKE_AWS_BIN:-target/debug/fake-aws}"
FILES=helm/sfn-worker/files
ALERTS="${DRILL_ALERTS:-$FILES/alerts.yaml}"
ACCOUNT=123456789012
REGION=us-east-1

step() { printf '\n==> [%3ss] %s\n' "$(($(date +%s) - STARTED))" "$*"; }
info() { printf '    %s\n' "$*"; }
die() { printf '\nDRILL FAILED: %s\n' "$*" >&2; exit 1; }

# --- tools ---------------------------------------------------------------------

step "tools: prometheus, promtool, prometheus-alertmanager, amtool"
need=()
{ command -v prometheus && command -v promtool; } >/dev/null || need+=(prometheus)
{ command -v prometheus-alertmanager && command -v amtool; } >/dev/null || need+=(prometheus-alertmanager)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    die "missing ${need[*]} (Debian packages); install them, or run this as root on Debian"
  fi
  info "apt-get install ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1; } ||
    die "apt-get install ${need[*]} failed"
fi
for t in prometheus promtool prometheus-alertmanager amtool python3 curl; do
  command -v "$t" >/dev/null || die "$t is not available"
done
info "$(prometheus --version 2>&1 | head -1)"
info "$(prometheus-alertmanager --version 2>&1 | head -1)"

if [ "${DRILL_BUILD:-0}" = 1 ] || [ ! -x "$SFN_WORKER_BIN" ] || [ ! -x "$FAKE_AWS_BIN" ]; then
  step "building sfn-worker and fake-aws"
  cargo build --quiet --locked -p sfn-worker -p sfn-worker-bench --bins
fi
[ -x "$SFN_WORKER_BIN" ] || die "SFN_WORKER_BIN=$SFN_WORKER_BIN is not an executable"
[ -x "$FAKE_AWS_BIN" ] || die "FAKE_AWS_BIN=$FAKE_AWS_BIN is not an executable"
for bin in "$SFN_WORKER_BIN" "$FAKE_AWS_BIN"; do
  newer=$(find worker-core/src worker-bin/src handlers/src bench/src Cargo.lock -newer "$bin" -type f 2>/dev/null | head -3 | tr '\n' ' ')
  [ -z "$newer" ] || info "WARNING: $bin is older than the sources ($newer...): DRILL_BUILD=1 rebuilds it"
done
SFN_WORKER_BIN=$(realpath "$SFN_WORKER_BIN")
FAKE_AWS_BIN=$(realpath "$FAKE_AWS_BIN")

# --- processes, cleanup ----------------------------------------------------------

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sfn-worker-drill.XXXXXX")
declare -A PIDS=()
stop() { # stop NAME: SIGTERM, then SIGKILL after 3 s
  local pid=${PIDS[$1]:-}
  [ -n "$pid" ] || return 0
  unset "PIDS[$1]"
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e  # nothing here may end the cleanup early
  if [ $rc -ne 0 ]; then
    for log in worker-0 worker-1 fake fake-1 prometheus alertmanager; do
      [ -s "$WORK/$log.log" ] && { printf '\n--- last lines of %s.log\n' "$log"; tail -n 8 "$WORK/$log.log"; }
    done
  fi
  if [ -n "$CHECK_PID" ]; then kill "$CHECK_PID" 2>/dev/null; fi
  for name in "${!PIDS[@]}"; do stop "$name"; done
  if [ "${DRILL_KEEP:-0}" = 1 ]; then echo "work directory kept: $WORK"; else rm -rf "$WORK"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

kill_now() { # kill_now NAME: SIGKILL, no grace
  local pid=${PIDS[$1]:-}
  [ -n "$pid" ] || return 0
  unset "PIDS[$1]"
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# start NAME LOGFILE CMD...: a child in the background, its pid kept for stop.
start() {
  local name=$1 log=$2; shift 2
  "$@" >"$log" 2>&1 &
  PIDS[$name]=$!
}

read -r P_PROM P_AM P_SINK P_FAKE P_FAKE1 P_W0 P_W1 < <(python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(7)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
PY
)
export PROM="http://127.0.0.1:$P_PROM" AM="http://127.0.0.1:$P_AM" FAKE="http://127.0.0.1:$P_FAKE"
export SINK_LOG="$WORK/notifications.jsonl" TARGETS="$WORK/targets.json" SCALE
export W0="http://127.0.0.1:$P_W0"
# The checks run in the background and are waited for, so that a signal to
# this script is handled at once (bash runs traps only between foreground
# commands), and the check is stopped with the rest.
CHECK_PID=
drill() {
  python3 "$WORK/drill.py" "$@" &
  CHECK_PID=$!
  wait "$CHECK_PID"
}
DRILL=drill

# --- the checks (Python, stdlib only) ----------------------------------------------

cat >"$WORK/drill.py" <<'PY'
"""The drill's HTTP checks; `python3 drill.py COMMAND ARGS`. Exits 1 with
`FAILED: ...` naming what did not happen."""
import json
import math
import os
import re
import sys
import time
import urllib.parse
import urllib.request

PROM, AM, SINK_LOG = os.environ["PROM"], os.environ["AM"], os.environ["SINK_LOG"]
SCALE = float(os.environ["SCALE"])
SKIPS_FILE = os.path.join(os.path.dirname(SINK_LOG), "skips.txt")


def fail(msg):
    print(f"FAILED: {msg}", flush=True)
    sys.exit(1)


def say(msg):
    print(f"    {msg}", flush=True)


def skip(msg):
    """A check this worker binary cannot make (it predates the feature)."""
    print(f"    SKIPPED: {msg}", flush=True)
    with open(SKIPS_FILE, "a") as f:
        f.write(msg + "\n")


def get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def get_json(url):
    return json.loads(get(url))


def query(expr):
    d = get_json(f"{PROM}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    if d.get("status") != "success":
        fail(f"query {expr!r}: {d}")
    return d["data"]["result"]


def prom_alerts():
    return get_json(f"{PROM}/api/v1/alerts")["data"]["alerts"]


def am_alerts(active_only=True):
    q = "?active=true&silenced=false&inhibited=false" if active_only else ""
    return get_json(f"{AM}/api/v2/alerts{q}")


def notifications():
    try:
        with open(SINK_LOG) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def now_iso():
    """Now as Alertmanager writes times (UTC, RFC 3339), comparable as text
    down to the second."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() + 1))


def matches(labels, want):
    return all(labels.get(k) == v for k, v in want.items())


def show(labels):
    return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def wait(pred, timeout, step=0.5):
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() >= deadline:
            return None
        time.sleep(step)


# --- durations -----------------------------------------------------------------

UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
DURATION = r"(?:\d+(?:ms|s|m|h|d|w|y))+"


def seconds(text):
    return sum(int(n) * UNITS[u] for n, u in re.findall(r"(\d+)(ms|s|m|h|d|w|y)", text))


def scaled(text):
    s = max(1, round(seconds(text) / SCALE))
    return f"{s}s"


def cmd_rewrite(src, dst):
    """A copy of the rules with every duration divided by SCALE."""
    text = open(src).read()
    changes = []

    def sub(pattern, fmt):
        nonlocal text

        def one(m):
            changes.append(re.sub(r"\s+", " ", f"{m.group(0).strip()} -> {fmt(m).strip()}"))
            return fmt(m)
        text = re.sub(pattern, one, text)

    # for: / keep_firing_for:
    sub(rf"(?m)^(\s*(?:for|keep_firing_for):\s*)({DURATION})\s*$", lambda m: m.group(1) + scaled(m.group(2)))
    # range selectors and subqueries: [5m], [5m:30s]
    def window(m):
        w = scaled(m.group(1))
        # The worker's poll backoff (up to 30 s) is not scaled: a window
        # over failing polls keeps at least 30 s, or a backed-off poller's
        # errors would fall out of it between two attempts.
        if re.search(r'sfn_worker_polls_total\{[^}]*result="error"[^}]*\}\s*$', m.string[:m.start()]):
            w = f"{max(seconds(w), 30)}s"
        return "[" + w + ("" if ":" not in m.group(0) else ":" + (scaled(m.group(2)) if m.group(2) else "")) + "]"
    sub(rf"\[({DURATION})(?::({DURATION})?)?\]", window)
    # offsets
    sub(rf"\boffset\s+({DURATION})\b", lambda m: "offset " + scaled(m.group(1)))
    header = (f"# GENERATED by scripts/drill.sh from {src}: every duration divided by {SCALE:g}.\n"
              "# The drill checks wiring; alerts.test.yaml checks the real durations.\n")
    open(dst, "w").write(header + text)
    seen = {}
    for c in changes:
        seen[c] = seen.get(c, 0) + 1
    say("durations rewritten: " + ", ".join(f"{c}" + (f" (x{n})" if n > 1 else "") for c, n in seen.items()))


# --- waiting for things ------------------------------------------------------------

def cmd_wait_url(url, timeout, what):
    def up():
        try:
            get(url, timeout=1)
            return True
        except OSError:
            return False
    if not wait(up, float(timeout), 0.2):
        fail(f"{what} did not answer {url} within {timeout} s")


def cmd_wait_query(expr, timeout, what):
    """Wait until EXPR returns at least one series."""
    got = wait(lambda: query(expr), float(timeout))
    if not got:
        fail(f"{what}: `{expr}` returned nothing within {timeout} s")
    say(f"ok: {what}: " + ", ".join(f"{show(r['metric'])} = {r['value'][1]}" for r in got[:6]))


def cmd_wait_drained(timeout):
    """Wait until the fake has handed out and settled everything it holds."""
    fake = os.environ["FAKE"]
    last = {}

    def drained():
        nonlocal last
        last = json.loads(get(f"{fake}/stats"))
        return last["remaining_tasks"] == 0 and last["visible_messages"] == 0 and last["in_flight_messages"] == 0
    if not wait(drained, float(timeout)):
        fail(f"the fake backend still holds tasks after {timeout} s: {last}")
    keys = ("succeeded", "failed", "heartbeats", "deleted", "duplicates")
    say("fake backend drained: " + ", ".join(f"{k} {last[k]}" for k in keys))


def cmd_rules(alerts_yaml):
    """The rules Prometheus loaded: every alert of alerts.yaml, durations scaled, healthy."""
    want = re.findall(r"(?m)^\s*-\s*alert:\s*(\S+)", open(alerts_yaml).read())
    groups = get_json(f"{PROM}/api/v1/rules")["data"]["groups"]
    rules = {r["name"]: r for g in groups for r in g["rules"] if r["type"] == "alerting"}
    missing = [a for a in want if a not in rules]
    if missing:
        fail(f"Prometheus did not load the alerts {missing}")
    bad = [f"{n}: {r.get('lastError')}" for n, r in rules.items() if r.get("health") not in ("ok", "unknown")]
    if bad:
        fail(f"rules that do not evaluate: {bad}")
    for n in want:
        say(f"loaded {n}: for {rules[n]['duration']} s, health {rules[n]['health']}")


# --- alerts ----------------------------------------------------------------------

def firing_in_prom(name, want):
    return [a for a in prom_alerts() if a["labels"].get("alertname") == name
            and a["state"] == "firing" and matches(a["labels"], want)]


def active_in_am(name, want):
    return [a for a in am_alerts() if a["labels"].get("alertname") == name and matches(a["labels"], want)]


def notified(name, want, status):
    return [a for n in notifications() for a in n.get("alerts", [])
            if a["labels"].get("alertname") == name and a["status"] == status and matches(a["labels"], want)]


def cmd_expect_firing(name, want_json, timeout):
    """NAME fires in Prometheus with labels WANT, is active in Alertmanager
    for our receiver, and the webhook got a firing notification of it."""
    want = dict(json.loads(want_json), alertname=name)
    t0 = time.monotonic()
    timeout = float(timeout)
    got = wait(lambda: firing_in_prom(name, want), timeout)
    if not got:
        pending = [show(a["labels"]) for a in prom_alerts() if a["labels"].get("alertname") == name]
        fail(f"{name} {show(want)} did not fire in Prometheus within {timeout:g} s "
             f"(its alerts now: {pending or 'none'})")
    say(f"ok: Prometheus fires {show(got[0]['labels'])} after {time.monotonic() - t0:.0f} s")
    left = max(5.0, timeout - (time.monotonic() - t0))
    got = wait(lambda: active_in_am(name, want), left)
    if not got:
        fail(f"{name} {show(want)} fires in Prometheus but did not reach Alertmanager "
             f"(GET {AM}/api/v2/alerts?active=true) within {left:.0f} s")
    a = got[0]
    receivers = [r["name"] for r in a.get("receivers", [])]
    if a["endsAt"] <= now_iso():
        fail(f"{name} is in Alertmanager with endsAt {a['endsAt']} already past: it is not kept active")
    if a["status"]["state"] != "active" or "drill" not in receivers:
        fail(f"{name} is in Alertmanager but not active for the drill receiver: {a['status']}, receivers {receivers}")
    for k in ("summary", "description"):
        if not a["annotations"].get(k):
            fail(f"{name} reached Alertmanager without its {k} annotation")
    say(f"ok: Alertmanager has it active (receiver drill, startsAt {a['startsAt']}): {a['annotations']['summary']}")
    if not wait(lambda: notified(name, want, "firing"), 10):
        fail(f"Alertmanager holds {name} but sent no firing notification to the webhook within 10 s")
    say("ok: the webhook received the firing notification")


def cmd_expect_resolved(name, want_json, timeout):
    """NAME is neither pending nor firing in Prometheus, Alertmanager no longer
    lists it as active (endsAt passed), and the webhook got `resolved`."""
    want = dict(json.loads(want_json), alertname=name)
    t0 = time.monotonic()
    timeout = float(timeout)

    def gone():
        return not [a for a in prom_alerts() if a["labels"].get("alertname") == name and matches(a["labels"], want)]
    if not wait(gone, timeout):
        fail(f"{name} {show(want)} still pending or firing in Prometheus {timeout:g} s after the cause went away")
    say(f"ok: Prometheus no longer has it, after {time.monotonic() - t0:.0f} s")
    if not wait(lambda: not active_in_am(name, want), 15):
        fail(f"{name} {show(want)} is resolved in Prometheus but still active in Alertmanager after 15 s")
    for a in am_alerts(active_only=False):
        if a["labels"].get("alertname") == name and matches(a["labels"], want):
            ends = a["endsAt"]
            say(f"ok: Alertmanager still lists it, endsAt {ends}, state {a['status']['state']}")
            break
    else:
        say("ok: Alertmanager no longer lists it as active (resolved alerts leave /api/v2/alerts)")
    got = wait(lambda: notified(name, want, "resolved"), 15)
    if not got:
        fail(f"Alertmanager resolved {name} but sent no resolved notification to the webhook within 15 s")
    n = got[-1]
    if not n["startsAt"] < n["endsAt"] <= now_iso():
        fail(f"the resolved notification of {name} has startsAt {n['startsAt']}, endsAt {n['endsAt']}")
    say(f"ok: the webhook received the resolved notification (startsAt {n['startsAt']}, endsAt {n['endsAt']})")


def saturated_on_idle_binding(a):
    """SfnWorkerSlotsSaturated on a binding that ran nothing over the rule's
    window: the slots are held by idle pollers/receivers waiting for work."""
    if a["labels"].get("alertname") != "SfnWorkerSlotsSaturated":
        return False
    lb = a["labels"]
    sel = f'sfn_worker_tasks_in_flight{{pod="{lb.get("pod")}", binding="{lb.get("binding")}"}}'
    r = query(f"max_over_time({sel}[{scaled('5m')}])")
    # No series at all: the binding never started a task (only malformed messages).
    return not r or float(r[0]["value"][1]) == 0


def cmd_control(seconds_):
    """For SECONDS: no alert fires (Prometheus) and none is active
    (Alertmanager); the target stays up and ready."""
    end = time.monotonic() + float(seconds_)
    fired = {}
    pending = set()
    while time.monotonic() < end:
        for a in prom_alerts():
            key = show(a["labels"])
            if a["state"] == "firing":
                fired[key] = a
            else:
                pending.add(key)
        for a in am_alerts():
            fired.setdefault(show(a["labels"]), {"labels": a["labels"], "state": "active in Alertmanager"})
        if not query('up{job="sfn-worker", pod="drill-0"} == 1'):
            fail("the worker's target went down during the healthy run")
        time.sleep(1)
    real, idle = [], []
    for key, a in sorted(fired.items()):
        if saturated_on_idle_binding(a):
            idle.append(f'{a["labels"].get("binding")} ({a["labels"].get("source")})')
        else:
            real.append(key)
    for key in sorted(pending - set(fired)):
        say(f"(pending only, never fired: {key})")
    if idle:
        fail(f"SfnWorkerSlotsSaturated fired for IDLE bindings: {', '.join(idle)}. sfn_worker_slots_available "
             "counts the slots that idle pollers/receivers hold while they long-poll as taken; the rule must "
             "leave out a binding that got an empty poll in its window "
             "(unless on (namespace, pod, source, binding) ... increase(sfn_worker_polls_total{result=\"empty\"}[5m]) > 0)")
    if real:
        fail("alerts fired during the healthy run: " + "; ".join(real))
    say(f"ok: no alert fired in {seconds_} s of healthy running (Prometheus and Alertmanager)")


def parse_metrics(text):
    """The saturation and in-flight gauges of one /metrics answer:
    {"saturation": x, "binding_saturation": {b: x}, "in_flight": {b: n}}."""
    out = {"saturation": None, "binding_saturation": {}, "in_flight": {}}
    for line in text.splitlines():
        m = re.match(r'(sfn_worker_saturation|sfn_worker_binding_saturation|sfn_worker_tasks_in_flight)(\{[^}]*\})?\s+(\S+)', line)
        if not m:
            continue
        name, labels, value = m.group(1), m.group(2) or "", float(m.group(3))
        b = re.search(r'binding="([^"]*)"', labels)
        if name == "sfn_worker_saturation":
            out["saturation"] = value
        elif b:
            out[name.replace("sfn_worker_", "").replace("tasks_", "")][b.group(1)] = value
    return out


def cmd_sample_metrics(metrics_url, path):
    """Until killed: the worker's saturation and in-flight gauges, read
    straight from its /metrics every 50 ms (Prometheus scrapes every second,
    and the healthy run lasts a few), one JSON line each."""
    with open(path, "a") as f:
        while True:
            try:
                row = parse_metrics(get(metrics_url, timeout=1))
                f.write(json.dumps(dict(row, t=time.time())) + "\n")
                f.flush()
            except OSError:
                pass
            time.sleep(0.05)


def implied_slots(pairs, what, want):
    """(tasks running, gauge) pairs read from one /metrics answer each: the
    slots the gauge divides by, as their median (an answer can fall between
    the two updates of one task start), WANT within 10%."""
    got = sorted(n / v for n, v in pairs if v > 0)
    if len(got) < 5:
        fail(f"only {len(got)} reading(s) of {what} above 0: the healthy run was too short to check it")
    median = got[len(got) // 2]
    if abs(median - want) > 0.1 * want:
        fail(f"{what}: tasks running / gauge is {median:g} (median of {len(got)} readings, "
             f"from {got[0]:g} to {got[-1]:g}), expected {want:g} slots")
    say(f"ok: {what} = tasks running over {median:g} slots (median of {len(got)} readings; expected {want:g})")


def cmd_saturation(samples_path, pod, busy, worker_slots, busy_slots, window):
    """The saturation gauges after a busy run. From the worker's /metrics,
    read every 50 ms during the run: sfn_worker_saturation is within 0..1,
    above 0 whenever the binding BUSY held tasks, and tasks running over
    WORKER_SLOTS; sfn_worker_binding_saturation is within 0..1 for every
    binding, BUSY's is its tasks running over BUSY_SLOTS. Through
    Prometheus: one worker-wide series, within 0..1 over WINDOW, above 0 at
    the scrapes where BUSY held tasks."""
    rows = [json.loads(line) for line in open(samples_path) if line.strip()]
    if not rows:
        fail(f"no reading of the worker's /metrics in {samples_path}")
    if all(r["saturation"] is None for r in rows):
        skip("the worker does not export sfn_worker_saturation (the binary predates the saturation "
             "gauges): the saturation checks were not made")
        return
    rows = [r for r in rows if r["saturation"] is not None]
    values = [r["saturation"] for r in rows]
    if not all(0 <= v <= 1 for v in values):
        fail(f"sfn_worker_saturation left 0..1: from {min(values):g} to {max(values):g}")
    held = [r for r in rows if r["in_flight"].get(busy, 0) > 0]
    if len(held) < 5:
        fail(f"the {busy} binding held tasks in only {len(held)} of {len(rows)} readings: the drill's load did not reach it")
    zero = [r for r in held if r["saturation"] <= 0]
    if zero:
        fail(f"sfn_worker_saturation read 0 while the {busy} binding held tasks ({len(zero)} of {len(held)} readings)")
    say(f"ok: sfn_worker_saturation within 0..1 in {len(rows)} readings of /metrics (up to {max(values):g}), "
        f"above 0 in all {len(held)} where {busy} held tasks")
    implied_slots([(sum(r["in_flight"].values()), r["saturation"]) for r in rows], "sfn_worker_saturation",
                  float(worker_slots))

    sel = f'sfn_worker_saturation{{pod="{pod}"}}'
    now = query(sel)
    if len(now) != 1:
        fail(f"`{sel}` returned {len(now)} series; expected one, worker-wide")
    extra = sorted(set(now[0]["metric"]) - {"__name__", "job", "instance", "namespace", "pod"})
    if extra:
        fail(f"sfn_worker_saturation carries labels {extra}: it should be one worker-wide series")
    lo = float(query(f"min_over_time({sel}[{window}])")[0]["value"][1])
    hi = float(query(f"max_over_time({sel}[{window}])")[0]["value"][1])
    if not 0 <= lo <= hi <= 1 or hi <= 0:
        scraped = [(round(float(t) - held[0]["t"], 2), v) for r in query(f"{sel}[{window}]") for t, v in r["values"]]
        fail(f"Prometheus has sfn_worker_saturation from {lo:g} to {hi:g} over {window}: expected above 0 at "
             f"some scrape, within 0..1. Its scrapes (s after {busy} first held tasks, value): {scraped}; "
             f"{busy} held tasks for {held[-1]['t'] - held[0]['t']:.1f} s")
    busy_held = f'sum by (namespace, pod) (sfn_worker_tasks_in_flight{{pod="{pod}", binding="{busy}"}}) > 0'
    low = query(f"min_over_time(({sel} and on (namespace, pod) {busy_held})[{window}:1s])")
    if low and float(low[0]["value"][1]) <= 0:
        fail(f"Prometheus scraped sfn_worker_saturation 0 while the {busy} binding held tasks")
    say(f"ok: Prometheus has one worker-wide series, from {lo:g} to {hi:g} over {window}"
        + (f", at least {float(low[0]['value'][1]):g} at the scrapes where {busy} held tasks" if low else ""))

    bs = [r for r in rows if r["binding_saturation"]]
    if not bs:
        skip("the worker does not export sfn_worker_binding_saturation (the binary predates it): "
             "the binding saturation checks were not made")
        return
    bindings = set(rows[-1]["binding_saturation"])
    want = {r["metric"].get("binding") for r in query(f'sfn_worker_slots_available{{pod="{pod}"}}')}
    if bindings != want:
        fail(f"sfn_worker_binding_saturation has series for {sorted(bindings)}; the worker's bindings are {sorted(want)}")
    spans = []
    for b in sorted(bindings):
        v = [r["binding_saturation"][b] for r in bs if b in r["binding_saturation"]]
        if not all(0 <= x <= 1 for x in v):
            fail(f"sfn_worker_binding_saturation of {b} left 0..1: from {min(v):g} to {max(v):g}")
        spans.append(f"{b} {min(v):g}..{max(v):g}")
    say(f"ok: sfn_worker_binding_saturation for every binding, within 0..1: {', '.join(spans)}")
    implied_slots([(r["in_flight"].get(busy, 0), r["binding_saturation"].get(busy, 0)) for r in bs],
                  f"sfn_worker_binding_saturation of {busy}", float(busy_slots))


def cmd_saturation_idle(metrics_url, pod, window):
    """After WINDOW with nothing to do: sfn_worker_saturation is 0, though
    idle pollers hold slots (sfn_worker_slots_available, shown)."""
    if "sfn_worker_saturation" not in exported_names(metrics_url):
        say("(skipped, as above: no sfn_worker_saturation)")
        return
    hi = query(f'max_over_time(sfn_worker_saturation{{pod="{pod}"}}[{window}])')
    if not hi or float(hi[0]["value"][1]) != 0:
        fail(f"sfn_worker_saturation was not 0 for the last {window} of an idle worker: "
             f"{hi[0]['value'][1] if hi else 'no series'} (idle pollers must not count)")
    free = ", ".join(f'{r["metric"].get("binding")} {r["value"][1]}'
                     for r in sorted(query(f'sfn_worker_slots_available{{pod="{pod}"}}'), key=lambda r: r["metric"].get("binding", "")))
    say(f"ok: sfn_worker_saturation stayed 0 for the last {window} of idling (free slots now: {free})")


def cmd_snapshot(what):
    """Print what fires now (information, not a check)."""
    firing = sorted(show(a["labels"]) for a in prom_alerts() if a["state"] == "firing")
    pending = sorted(show(a["labels"]) for a in prom_alerts() if a["state"] == "pending")
    say(f"{what}: firing: {'; '.join(firing) or 'none'}")
    if pending:
        say(f"{what}: pending: {'; '.join(pending)}")


def cmd_value(expr, want, what):
    """EXPR returns exactly one series, whose value is WANT."""
    r = query(expr)
    if len(r) != 1 or float(r[0]["value"][1]) != float(want):
        fail(f"{what}: `{expr}` returned {[(show(x['metric']), x['value'][1]) for x in r]}, expected one series = {want}")
    say(f"ok: {what}")


def cmd_not_firing(name, want_json, what):
    want = dict(json.loads(want_json), alertname=name)
    r = [a for a in prom_alerts() if matches(a["labels"], want)]
    if r:
        fail(f"{what}: {name} is {r[0]['state']}: {show(r[0]['labels'])}")
    say(f"ok: {what}")


def rule_exprs():
    groups = get_json(f"{PROM}/api/v1/rules")["data"]["groups"]
    return {r["name"]: r["query"] for g in groups for r in g["rules"] if r["type"] == "alerting"}


def cmd_has_series(expr):
    """Exit 0 if EXPR returns a series now, 3 if not."""
    sys.exit(0 if query(expr) else 3)


def cmd_skip(msg):
    skip(msg)


# --- the dashboard -------------------------------------------------------------------

def panel_targets(dashboard):
    out = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                if t.get("expr"):
                    out.append((p.get("title", "?"), t.get("legendFormat", ""), t["expr"]))
            walk(p.get("panels", []))
    walk(dashboard.get("panels", []))
    return out


def grafana(expr, rate_interval):
    for var, value in (("namespace", ".*"), ("binding", ".*"), ("__rate_interval", rate_interval),
                       ("__interval", "1s"), ("__range", "5m")):
        expr = expr.replace("${" + var + "}", value).replace("$" + var, value)
    if "$" in expr:
        fail(f"a dashboard query uses a variable the drill does not know: {expr}")
    return expr


def cmd_dashboard(path, rate_interval):
    d = json.load(open(path))
    rows, empty = [], []
    for title, legend, expr in panel_targets(d):
        q = grafana(expr, rate_interval)
        r = query(q)
        nan = sum(1 for x in r if math.isnan(float(x["value"][1])))
        rows.append((title, legend, len(r), nan, q))
        if not r:
            empty.append(f"{title} / {legend}: {q}")
    w = max(len(f"{t} / {l}") for t, l, *_ in rows)
    print(f"    {'panel / legend':<{w}}  series  expr")
    for t, l, n, nan, q in rows:
        short = q if len(q) <= 90 else q[:87] + "..."
        print(f"    {t + ' / ' + l:<{w}}  {n:>3}{'*' if nan else ' '}    {short}")
    if any(nan for *_, nan, _ in rows):
        say("* some series are NaN (no observations in the window)")
    # The template variables' own queries.
    for var in d.get("templating", {}).get("list", []):
        m = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", var.get("query", "") if isinstance(var.get("query"), str) else "")
        if m:
            vals = get_json(f"{PROM}/api/v1/label/{m.group(2)}/values?" + urllib.parse.urlencode({"match[]": m.group(1)}))["data"]
            if not vals:
                empty.append(f"variable ${var['name']}: {var['query']}")
            say(f"variable ${var['name']} = {var['query']}: {vals}")
    if empty:
        fail("dashboard queries that return nothing: " + " | ".join(empty))
    say(f"ok: all {len(rows)} dashboard queries return series")


def exported_names(metrics_url):
    names = set()
    for line in get(metrics_url).splitlines():
        if line.startswith("# TYPE "):
            names.add(line.split()[2])
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, 1)[0])
    return names


def cmd_metric_names(metrics_url, dashboard):
    exported = exported_names(metrics_url)
    used = {}
    for title, _, expr in panel_targets(json.load(open(dashboard))):
        for n in re.findall(r"\bsfn_worker_[a-z0-9_]+", expr):
            used.setdefault(n, set()).add(f"dashboard: {title}")
    for name, expr in rule_exprs().items():
        for n in re.findall(r"\bsfn_worker_[a-z0-9_]+", expr):
            used.setdefault(n, set()).add(f"alert {name}")
    unknown = {n: sorted(w) for n, w in used.items() if n not in exported}
    if unknown:
        fail("names used but not exported by the worker's /metrics: "
             + "; ".join(f"{n} ({', '.join(w)})" for n, w in sorted(unknown.items())))
    say(f"ok: the {len(used)} metric names the dashboard and the alerts use are all in the worker's /metrics")
    families = {re.sub(r"_(bucket|sum|count)$", "", n) for n in exported if n.startswith("sfn_worker_")}
    unused = sorted(f for f in families if not any(u == f or u.startswith(f + "_") for u in used))
    if unused:
        say(f"(exported but in no panel or alert: {', '.join(unused)})")


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    globals()["cmd_" + cmd.replace("-", "_")](*args)
PY

# --- Prometheus and Alertmanager ----------------------------------------------------

step "Prometheus and Alertmanager on 127.0.0.1 (ports $P_PROM, $P_AM), webhook receiver on $P_SINK"
# The rules: a copy of alerts.yaml with every duration divided by $SCALE.
[ -f "$ALERTS" ] || die "no rules file $ALERTS"
info "rules: $ALERTS"
$DRILL rewrite "$ALERTS" "$WORK/alerts.drill.yaml"
promtool check rules "$WORK/alerts.drill.yaml" | sed 's/^/    /' || die "promtool check rules refused the drill's copy of alerts.yaml"

# Scrape targets come from a file, so the drill can add and remove its second
# worker. Both carry the labels the rules group by.
targets() { # targets POD...
  python3 - "$@" >"$TARGETS.tmp" <<PY
import json, sys
ports = {"drill-0": $P_W0, "drill-1": $P_W1}
print(json.dumps([{"targets": [f"127.0.0.1:{ports[p]}"], "labels": {"namespace": "drill", "pod": p}} for p in sys.argv[1:]]))
PY
  mv "$TARGETS.tmp" "$TARGETS"
}
targets drill-0
cat >"$WORK/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - $WORK/alerts.drill.yaml
alerting:
  alertmanagers:
    - static_configs:
        - targets: ["127.0.0.1:$P_AM"]
scrape_configs:
  - job_name: sfn-worker
    file_sd_configs:
      - files: ["$TARGETS"]
        refresh_interval: 1s
EOF
promtool check config "$WORK/prometheus.yml" 2>&1 | sed 's/^/    /' || die "promtool check config refused the drill's prometheus.yml"

cat >"$WORK/alertmanager.yml" <<EOF
global:
  resolve_timeout: 10s
route:
  receiver: drill
  group_by: ["..."]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 24h
receivers:
  - name: drill
    webhook_configs:
      - url: http://127.0.0.1:$P_SINK/
        send_resolved: true
EOF
amtool check-config "$WORK/alertmanager.yml" 2>&1 | sed 's/^/    /' || die "amtool check-config refused the drill's alertmanager.yml"

# The webhook receiver: every notification Alertmanager sends, one JSON line each.
start sink "$WORK/sink.log" python3 -c '
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        with open(sys.argv[2], "ab") as f:
            f.write(body.replace(b"\n", b" ") + b"\n")
        self.send_response(200); self.end_headers()
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
' "$P_SINK" "$SINK_LOG"
start alertmanager "$WORK/alertmanager.log" prometheus-alertmanager --config.file="$WORK/alertmanager.yml" \
  --storage.path="$WORK/am-data" --web.listen-address="127.0.0.1:$P_AM" --cluster.listen-address=
start prometheus "$WORK/prometheus.log" prometheus --config.file="$WORK/prometheus.yml" \
  --storage.tsdb.path="$WORK/prom-data" --web.listen-address="127.0.0.1:$P_PROM" --rules.alert.resend-delay=2s
$DRILL wait-url "$AM/-/ready" 30 Alertmanager || die "Alertmanager did not start"
$DRILL wait-url "$PROM/-/ready" 30 Prometheus || die "Prometheus did not start"
$DRILL wait-query "vector(1)" 10 "Prometheus answers queries" >/dev/null || die "Prometheus does not answer queries"
$DRILL rules "$ALERTS" || die "the rules did not load"

# --- the worker and the fake backend ------------------------------------------------------

# fake_start NAME PORT ARGS...: fake-aws on PORT (a restart keeps the port, so
# the worker's endpoint is unchanged).
fake_start() {
  local name=$1 port=$2; shift 2
  stop "$name"
  start "$name" "$WORK/$name.log" "$FAKE_AWS_BIN" --listen "127.0.0.1:$port" --poll-hold-ms 1000 "$@"
  $DRILL wait-url "http://127.0.0.1:$port/healthz" 10 "fake-aws ($name)" || die "fake-aws did not start"
}

# The worker's bindings: "orders" runs a shell command that rejects one task
# in ten (input ending in 3: Orders.Rejected); "slow" holds its tasks 2.5 s
# with heartbeats every second; "callbacks" is an SQS binding with defaults
# but the visibility (redeliveries from a restarted backend are then
# duplicates it remembers); "misrouted" reads the token from the wrong place
# (a number), so every message it gets is malformed (token_not_string) and
# deleted. All bindings share the fake's one task pool and one queue.
# The worker's slots: 16 + 8 + 16 (the default concurrency) + 2 = 42, under
# max_concurrency; what sfn_worker_saturation divides by.
WORKER_SLOTS=42 SLOW_SLOTS=8
worker_config() { # worker_config METRICS_PORT ENDPOINT
  cat <<EOF
[aws]
region = "$REGION"
endpoint_url = "$2"

[worker]
metrics_addr = "127.0.0.1:$1"
max_concurrency = 64
shutdown_grace_secs = 5

[[activity]]
name = "orders"
arn = "arn:aws:states:$REGION:$ACCOUNT:activity:orders"
handler = "exec"
pollers = 4
concurrency = 16
[activity.params]
command = ["sh", "-c", "read -r input; case \"\$input\" in *3}) echo '{\"error\": \"Orders.Rejected\", \"cause\": \"ends in 3\"}'; exit 1;; esac; printf '%s' \"\$input\""]

[[activity]]
name = "slow"
arn = "arn:aws:states:$REGION:$ACCOUNT:activity:slow"
handler = "echo"
pollers = 2
concurrency = 8
heartbeat_secs = 1
[activity.params]
delay_ms = 2500

[[queue]]
name = "callbacks"
url = "$2/$ACCOUNT/callbacks"
handler = "echo"
input_pointer = "/input"
visibility_timeout_secs = 300
# Claimed in the fake's DynamoDB: the dashboard's ledger panels.
ledger = true

[[queue]]
name = "misrouted"
url = "$2/$ACCOUNT/misrouted"
handler = "echo"
concurrency = 2
receivers = 1
token_pointer = "/input/n"
on_malformed = "delete"

[ledger]
table = "drill-ledger"
EOF
}
worker_start() { # worker_start NAME METRICS_PORT ENDPOINT
  worker_config "$2" "$3" >"$WORK/$1.toml"
  "$SFN_WORKER_BIN" check --config "$WORK/$1.toml" >/dev/null || die "sfn-worker check refused $WORK/$1.toml"
  start "$1" "$WORK/$1.log" env AWS_ACCESS_KEY_ID=drill AWS_SECRET_ACCESS_KEY=drill AWS_REGION=$REGION \
    AWS_DEFAULT_REGION=$REGION AWS_ENDPOINT_URL="$3" AWS_EC2_METADATA_DISABLED=true RUST_LOG=warn \
    "$SFN_WORKER_BIN" run --config "$WORK/$1.toml"
}

# --- a: healthy run ------------------------------------------------------------------------

# Every binding takes from the fake's one pool, so "slow" (8 slots, 2.5 s
# tasks) is truly saturated while the pool lasts: 1,000 activity tasks last
# a few seconds, well under the 30 s SfnWorkerSlotsSaturated needs.
step "a. healthy run: 1,000 activity tasks and 1,500 SQS messages, no faults; no alert may fire; the saturation gauges"
# Prometheus applies discovered targets up to 5 s after it starts: the
# worker's whole run could fall before its first scrape.
$DRILL wait-query 'up{job="sfn-worker", pod="drill-0"}' 15 "Prometheus scrapes the worker's address (nothing there yet)" ||
  die "Prometheus did not take the scrape target"
fake_start fake "$P_FAKE" --activity-tasks 1000 --messages 1500
worker_start worker-0 "$P_W0" "$FAKE"
# The run lasts a second or two: the saturation gauges are also read
# straight from /metrics, every 50 ms, to see them move.
start sampler "$WORK/sampler.log" python3 "$WORK/drill.py" sample-metrics "$W0/metrics" "$WORK/saturation.jsonl"
$DRILL wait-url "$W0/readyz" 30 "the worker's /readyz" || die "the worker did not become ready"
$DRILL wait-query 'up{job="sfn-worker", namespace="drill", pod="drill-0"} == 1' 15 "Prometheus scrapes the worker" || die "Prometheus does not scrape the worker"
$DRILL wait-query 'sfn_worker_ready{namespace="drill", pod="drill-0"} == 1' 10 "sfn_worker_ready is 1" || die "the worker is not ready in Prometheus"
$DRILL wait-drained 60 || die "the healthy run did not finish"
# Until Prometheus has scraped the end of the run (nothing in flight).
$DRILL wait-query 'sum(sfn_worker_tasks_in_flight{pod="drill-0"}) == 0' 15 "Prometheus sees the run's end" >/dev/null ||
  die "tasks stayed in flight after the healthy run"
stop sampler
$DRILL saturation "$WORK/saturation.jsonl" drill-0 slow "$WORKER_SLOTS" "$SLOW_SLOTS" 2m || die "the saturation gauges are wrong"
# Long enough for every rule's window and for: (the longest, 30 s + 30 s, is
# SfnWorkerTasksClosedByService; nothing can make it fire here).
$DRILL control 40 || die "the healthy run was not quiet"
$DRILL saturation-idle "$W0/metrics" drill-0 20s || die "an idle worker's saturation is not 0"

# --- b: backend trouble ----------------------------------------------------------------------

step "b1. the backend throttles half the SendTask* (and SQS) calls and answers 100 ms late, under load: SfnWorkerApiErrors"
# The latency makes the 2,000 tasks last the 20 s of the rule's `for:`.
fake_start fake "$P_FAKE" --activity-tasks 2000 --messages 1000 --throttle-rate 0.5 --latency-ms 100
# Meanwhile, a second worker (pod drill-1) starts with no backend at all.
targets drill-0 drill-1
worker_start worker-1 "$P_W1" "http://127.0.0.1:$P_FAKE1"
$DRILL expect-firing SfnWorkerApiErrors \
  '{"namespace": "drill", "operation": "SendTaskSuccess", "code": "ThrottlingException", "severity": "warning"}' 60 ||
  die "a throttled backend did not raise SfnWorkerApiErrors through to Alertmanager"
$DRILL snapshot "while throttled (information)"

step "b2. a worker that starts with its backend unreachable (pod drill-1): SfnWorkerNotReady"
$DRILL wait-query 'up{pod="drill-1"} == 1' 10 "Prometheus scrapes the starting worker" || die "drill-1 is not scraped"
! curl -sf -o /dev/null "http://127.0.0.1:$P_W1/readyz" || die "drill-1 became ready with no backend"
# A worker exports sfn_worker_ready 0 from its start, so that this alert can
# fire for one stuck in its start-up checks; an older binary exported
# nothing until it was ready.
if $DRILL has-series 'count_over_time(sfn_worker_ready{pod="drill-1"}[1m])'; then
  $DRILL value 'max_over_time(sfn_worker_ready{pod="drill-1"}[1m])' 0 "drill-1 exports sfn_worker_ready 0 while stuck in start-up" ||
    die "drill-1 was ready at some point with no backend"
  $DRILL expect-firing SfnWorkerNotReady '{"namespace": "drill", "pod": "drill-1", "severity": "warning"}' 30 ||
    die "a worker stuck in start-up did not raise SfnWorkerNotReady"
  fake_start fake-1 "$P_FAKE1"
  $DRILL expect-resolved SfnWorkerNotReady '{"namespace": "drill", "pod": "drill-1"}' 40 ||
    die "SfnWorkerNotReady did not resolve once drill-1 was ready"
else
  $DRILL skip "a worker stuck in start-up (backend unreachable, /readyz 503) exports no sfn_worker_ready series with this binary (it predates sfn_worker_ready 0 from the start), so SfnWorkerNotReady cannot fire for it: not checked"
  fake_start fake-1 "$P_FAKE1"
  $DRILL wait-query 'sfn_worker_ready{pod="drill-1"} == 1' 20 "drill-1 is ready once its backend answers" || die "drill-1 did not become ready"
fi
targets drill-0
stop worker-1
stop fake-1

step "b1 (end). the backend is healthy again (600 activity tasks, 2,000 messages, 1,500 of them redelivered): the alert resolves"
# The restarted fake reuses its token names (act-0...), so a task of the
# throttled backend reported to it closes a token it then hands out again:
# the worker finds that task closed (outcome cancelled), and
# SfnWorkerTasksClosedByService may go pending. That is the fake, not the
# worker; nothing below depends on it.
fake_start fake "$P_FAKE" --activity-tasks 600 --messages 2000
$DRILL expect-resolved SfnWorkerApiErrors '{"namespace": "drill", "operation": "SendTaskSuccess", "code": "ThrottlingException"}' 60 ||
  die "SfnWorkerApiErrors did not resolve after the backend recovered"
$DRILL wait-drained 60 || die "the run after recovery did not finish"

# --- d: dashboard --------------------------------------------------------------------------------

step "d. dashboard: every panel query returns series (\$namespace, \$binding = .*, \$__rate_interval = 1m)"
$DRILL dashboard "$FILES/dashboard.json" 1m || die "dashboard queries without data"
$DRILL metric-names "$W0/metrics" "$FILES/dashboard.json" || die "the dashboard or the alerts use metric names the worker does not export"

# --- b3: stopped backend ----------------------------------------------------------------------------

step "b3. the backend stops (every poll fails): SfnWorkerPollsFailing for every binding; the worker stays ready"
stop fake
# [5m] of successes -> 10 s, then for: 10 s. The errors' window keeps 30 s
# (the worker's poll backoff is not scaled).
for b in orders:activity slow:activity callbacks:sqs misrouted:sqs; do
  $DRILL expect-firing SfnWorkerPollsFailing \
    "{\"namespace\": \"drill\", \"pod\": \"drill-0\", \"binding\": \"${b%%:*}\", \"source\": \"${b#*:}\", \"severity\": \"critical\"}" 45 ||
    die "a dead backend did not raise SfnWorkerPollsFailing for ${b%%:*}"
done
$DRILL value 'count(sum by (binding) (increase(sfn_worker_polls_total{pod="drill-0", result="error"}[30s])) > 0)' 4 \
  "all 4 bindings count failing polls" || die "not every binding counts its failing polls"
$DRILL value 'sfn_worker_ready{pod="drill-0"}' 1 "the worker stays ready (readiness means its pollers run)" ||
  die "readiness changed with the backend"
$DRILL not-firing SfnWorkerNotReady '{"pod": "drill-0"}' "SfnWorkerNotReady does not fire for a dead backend (by design)" || die "unexpected SfnWorkerNotReady"
$DRILL snapshot "without a backend (information)"

# --- c: stopped worker --------------------------------------------------------------------------------

step "c. the worker is killed (SIGKILL): the target is down, SfnWorkerDown"
kill_now worker-0
$DRILL wait-query 'up{job="sfn-worker", namespace="drill", pod="drill-0"} == 0' 10 "up == 0 for the killed worker" ||
  die "Prometheus does not see the killed worker as down"
$DRILL value 'count(sfn_worker_ready{pod="drill-0"}) or vector(0)' 0 "its series are gone (stale): no rule on them can fire" ||
  die "the killed worker's series did not go stale"
$DRILL expect-firing SfnWorkerDown \
  "{\"job\": \"sfn-worker\", \"instance\": \"127.0.0.1:$P_W0\", \"namespace\": \"drill\", \"pod\": \"drill-0\", \"severity\": \"critical\"}" 30 ||
  die "the killed worker did not raise SfnWorkerDown"
$DRILL snapshot "with the worker down (information)"

# --- summary ----------------------------------------------------------------------------------------------

step "done in $(($(date +%s) - STARTED)) s"
if [ -s "$WORK/skips.txt" ]; then
  printf '\n%d check(s) SKIPPED (this binary predates what they check; rebuild it, or DRILL_BUILD=1):\n' "$(wc -l <"$WORK/skips.txt")"
  sed 's/^/  - /' "$WORK/skips.txt"
  if [ "${DRILL_STRICT:-0}" = 1 ]; then die "skipped checks (DRILL_STRICT=1)"; fi
fi
echo "live drill passed"
