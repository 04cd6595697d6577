#!/usr/bin/env bash
# Validate everything operators deploy, with the real tools (installed by
# scripts/deploy-tools.sh): the Dockerfile (hadolint), the Helm chart (lint,
# template with default values, with every option on and with each
# autoscaling form, values.schema.json refusing bad values,
# kubernetes-validate --strict, checkov, the KEDA triggers and the HPA's
# custom metric), the chart's rendered config and the ECS config
# (sfn-worker check), the alert rules (promtool, as shipped and as the
# chart's PrometheusRule), the metric names the dashboard, the alerts and
# the prometheus-adapter rule use, and the image (scripts/image.sh).
# A tool that cannot be installed is skipped with a loud message.
set -uo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/deploy-tools.sh)"
export BC_SKIP_MAPPING=TRUE
K8S_VERSION="${K8S_VERSION:-1.34.0}"
CHART=helm/sfn-worker
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
failures=()
skipped=()
step() { printf '\n--- %s\n' "$*"; }
check() { if "$@"; then :; else failures+=("$*"); echo "FAILED: $*"; fi; }
have() {
  if command -v "$1" >/dev/null 2>&1; then return 0; fi
  skipped+=("$2 ($1 could not be installed)")
  printf '\n!!!!! SKIPPED: %s: %s is not available !!!!!\n' "$2" "$1"
  return 1
}

cargo build --quiet --locked -p sfn-worker
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
SFN_WORKER="$target_dir/debug/sfn-worker"

step "hadolint"
if have hadolint "Dockerfile lint"; then
  check hadolint Dockerfile deploy/container/Containerfile.prebuilt
fi

if have helm "Helm chart checks"; then
  # Each ci/ values file, rendered into $OUT/<name>.
  declare -A RENDERS=([default]=default-values.yaml [all]=all-features-values.yaml [hpa]=hpa-values.yaml
    [hpa-saturation]=hpa-saturation-values.yaml [keda-saturation]=keda-saturation-values.yaml)
  DIRS=(default all hpa hpa-saturation keda-saturation)

  step "helm lint"
  for dir in "${DIRS[@]}"; do
    check helm lint --strict "$CHART" -f "$CHART/ci/${RENDERS[$dir]}"
  done

  step "helm template"
  for dir in "${DIRS[@]}"; do
    check helm template sfn-worker "$CHART" -n workers -f "$CHART/ci/${RENDERS[$dir]}" --output-dir "$OUT/$dir"
  done

  step "the schema and the templates refuse bad values, saying which"
  refuses() {
    local expect="$1"; shift
    local err
    if err=$(helm template t "$CHART" -f "$CHART/ci/default-values.yaml" "$@" 2>&1 >/dev/null); then
      echo "FAILED: helm accepted $*"; return 1
    fi
    if ! grep -q -- "$expect" <<<"$err"; then
      echo "FAILED: helm refused $* without mentioning '$expect':"; echo "$err"; return 1
    fi
    echo "refused ($expect): $*"
  }
  check refuses "config.activity.0.arn" --set 'config.activity[0].arn=resize'
  check refuses "config.worker" --set config.worker.metrics_addr=0.0.0.0:1
  check refuses "pollers" --set 'config.activity[0].pollers=0'
  check refuses "on_shutdown" --set 'config.queue[0].url=https://sqs.us-east-1.amazonaws.com/123456789012/q' --set 'config.queue[0].handler=echo' --set 'config.queue[0].on_shutdown=never'
  check refuses "enable one" --set autoscaling.enabled=true --set keda.enabled=true \
    --set 'config.queue[0].url=https://sqs.us-east-1.amazonaws.com/123456789012/q' --set 'config.queue[0].handler=echo'
  check refuses "add a config.queue" --set keda.enabled=true
  check refuses "at least one" --set 'config.activity=null'
  check refuses "probes.type" --set probes.type=curl
  check refuses "keda.saturation.serverAddress" --set keda.enabled=true --set keda.saturation.enabled=true
  check refuses "keda.minReplicaCount" --set keda.enabled=true --set keda.saturation.enabled=true \
    --set keda.saturation.serverAddress=http://prometheus:9090 --set keda.minReplicaCount=0
  check refuses "threshold" --set keda.saturation.threshold=1.5
  check refuses "needs a metric" --set autoscaling.enabled=true --set autoscaling.targetCPUUtilizationPercentage=null
  check refuses "targetAverageValue" --set autoscaling.saturation.targetAverageValue=most

  step "the autoscalers: KEDA's trigger metadata, the HPA's custom metric and prometheus-adapter's rule"
  # KEDA reads trigger metadata as strings (a number there is refused when
  # applied); the HPA asks for the metric the adapter rule serves.
  check python3 - "$OUT" "$CHART/files/prometheus-adapter-rules.yaml" <<'PY'
import glob, os, sys, yaml
out, adapter = sys.argv[1:]
served = {r["name"]["as"] for r in yaml.safe_load(open(adapter))["rules"]}
seen = {"prometheus": 0, "Pods": 0}
for path in sorted(glob.glob(os.path.join(out, "*", "sfn-worker", "templates", "*.yaml"))):
    for doc in yaml.safe_load_all(open(path)):
        if not doc:
            continue
        if doc["kind"] == "ScaledObject":
            for t in doc["spec"]["triggers"]:
                bad = {k: v for k, v in t["metadata"].items() if not isinstance(v, str)}
                assert not bad, f"{path}: {t['type']} trigger metadata that are not strings: {bad}"
                if t["type"] == "prometheus":
                    m = t["metadata"]
                    assert m["serverAddress"].startswith(("http://", "https://")), m
                    assert "sfn_worker_saturation" in m["query"], m
                    assert 0 < float(m["threshold"]) <= 1, m
                    assert t.get("metricType") == "AverageValue", t
                    seen["prometheus"] += 1
        if doc["kind"] == "HorizontalPodAutoscaler":
            assert doc["spec"]["metrics"], f"{path}: an HPA without metrics"
            for m in doc["spec"]["metrics"]:
                if m["type"] == "Pods":
                    name = m["pods"]["metric"]["name"]
                    assert name in served, f"{path}: the HPA asks for {name}; the adapter rule serves {served}"
                    seen["Pods"] += 1
assert seen["prometheus"] >= 2 and seen["Pods"] >= 1, f"the saturation renders are missing: {seen}"
print(f"ok: {seen['prometheus']} KEDA prometheus trigger(s), {seen['Pods']} HPA Pods metric(s) served by the adapter rule")
PY

  step "the chart's rendered config is one the worker accepts"
  for dir in "${DIRS[@]}"; do
    cm="$OUT/$dir/sfn-worker/templates/configmap.yaml"
    # python3 is the tools venv's here (first on PATH), which has PyYAML.
    python3 -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["data"]["config.toml"])' "$cm" >"$OUT/$dir.toml"
    check env API_TOKEN=x "$SFN_WORKER" check --config "$OUT/$dir.toml" >/dev/null
  done

  if have kubernetes-validate "manifest validation"; then
    step "kubernetes-validate --strict (Kubernetes $K8S_VERSION)"
    for dir in "${DIRS[@]}"; do
      check kubernetes-validate -k "$K8S_VERSION" --strict $(find "$OUT/$dir" -name '*.yaml' | sort)
    done
  fi

  if have checkov "manifest policy checks"; then
    step "checkov (skips are annotated in the chart with their reasons)"
    for dir in "${DIRS[@]}"; do
      check checkov --quiet --compact --skip-download --framework kubernetes -d "$OUT/$dir"
    done
    check checkov --quiet --compact --skip-download --framework dockerfile -f Dockerfile -f deploy/container/Containerfile.prebuilt
  fi
fi

step "promtool check rules"
if have promtool "alert rules check"; then
  check promtool check rules "$CHART/files/alerts.yaml"
fi

step "promtool test rules: every alert fires when it should and stays quiet when it should not"
if have promtool "alert rules unit tests"; then
  check promtool test rules "$CHART/files/alerts.test.yaml"
  # The same tests on the chart's PrometheusRule: what helm renders is the
  # rules file, untouched (its {{ $labels }} are Prometheus's, not Helm's).
  rule="$OUT/all/sfn-worker/templates/prometheusrule.yaml"
  if [ -f "$rule" ]; then
    mkdir -p "$OUT/rendered-rules"
    python3 -c 'import sys, yaml; yaml.safe_dump(yaml.safe_load(open(sys.argv[1]))["spec"], open(sys.argv[2], "w"))' \
      "$rule" "$OUT/rendered-rules/alerts.yaml" &&
      cp "$CHART/files/alerts.test.yaml" "$OUT/rendered-rules/" &&
      check promtool test rules "$OUT/rendered-rules/alerts.test.yaml"
  elif command -v helm >/dev/null 2>&1; then
    failures+=("no PrometheusRule rendered from ci/all-features-values.yaml"); echo "FAILED: no $rule"
  fi
fi

step "the dashboard, the alerts and the autoscaling use only metrics the worker exports"
check python3 - worker-core/src/metrics.rs "$CHART/files/dashboard.json" "$CHART/files/alerts.yaml" \
  "$CHART/files/prometheus-adapter-rules.yaml" "$CHART/templates/hpa.yaml" "$CHART/templates/_helpers.tpl" <<'PY'
import json, re, sys
source, dashboard, *others = sys.argv[1:]
json.load(open(dashboard))
known = set(re.findall(r'"(sfn_worker_[a-z_]+)"', open(source).read()))
used = set()
for f in (dashboard, *others):
    used |= set(re.findall(r'sfn_worker_[a-z_]+', open(f).read()))
histogram_suffixes = ("_bucket", "_sum", "_count")
unknown = sorted(m for m in used if m not in known and not any(m.endswith(s) and m[: -len(s)] in known for s in histogram_suffixes))
if unknown:
    sys.exit(f"unknown metrics: {unknown}")
print(f"{len(used)} metric names, all exported")
PY

step "ECS: the task definition's config is the one in config.toml, and the worker accepts it"
check python3 - deploy/ecs <<'PY'
import json, sys, os
d = sys.argv[1]
task = json.load(open(os.path.join(d, "task-definition.json")))
for f in ("iam-activities.json", "iam-queues.json"):
    json.load(open(os.path.join(d, f)))
c = task["containerDefinitions"][0]
assert c["stopTimeout"] <= 120 and c["user"] == "65532:65532" and c["readonlyRootFilesystem"]
env = {e["name"]: e["value"] for e in c["environment"]}
text = open(os.path.join(d, "config.toml")).read()
assert env["SFN_WORKER_CONFIG_TOML"].strip() in text, "config.toml differs from the task definition"
open("/tmp/sfn-worker-ecs.toml", "w").write(env["SFN_WORKER_CONFIG_TOML"])
print("task definition ok")
PY
check env API_TOKEN=x SFN_WORKER_CONFIG_TOML="$(cat /tmp/sfn-worker-ecs.toml)" "$SFN_WORKER" check >/dev/null

step "container image"
if have buildah "image build" && have podman "image run"; then
  check scripts/image.sh
fi

echo
if [ ${#skipped[@]} -gt 0 ]; then
  printf '!!!!! %d check(s) SKIPPED: %s\n' "${#skipped[@]}" "${skipped[*]}"
fi
if [ ${#failures[@]} -gt 0 ]; then
  printf 'deployment validation: %d failed:\n' "${#failures[@]}"
  printf '  %s\n' "${failures[@]}"
  exit 1
fi
echo "deployment validation passed"
