#!/usr/bin/env bash
# make images: Glassbox's images, built with buildah (no Docker engine), no network during the builds.
#
#   images/build.sh [NAME ...]    NAME: operator explainer predictor explainer-cpu predictor-cpu (default: all)
#
# The predictor image is the explainer image of its flavour with the predictor's entrypoint, so it is built
# after it. Each image's packages are a layer of their own, reused (`--layers`) until its lock changes.
# BASE_IMAGE: unset, the Debian base of `make base-image` when it is there, else python:3.11-slim at the
# Dockerfiles' pinned digest when a registry answers, else the Debian base, made now.
# TORCH_CPU_WHEELS: where the -cpu images' torch wheel is, when pip's own configuration does not find it.
# IMAGE_PREFIX and VERSION name them (defaults: the chart's ghcr.io/glassbox-dev and the chart's version).
# Every file in an image carries the commit's time, so two builds of one commit can be compared
# (NO_CACHE=1 builds every layer again instead of reusing the cached ones).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
DEBIAN_BASE=localhost/glassbox-base:bookworm
PREFIX=${IMAGE_PREFIX:-ghcr.io/glassbox-dev}
VERSION=${VERSION:-$(awk '$1 == "appVersion:" {gsub(/"/, "", $2); print $2}' charts/glassbox-operator/Chart.yaml)}
NAMES=("$@")
[ ${#NAMES[@]} -gt 0 ] || NAMES=(operator explainer predictor explainer-cpu predictor-cpu)

bash images/install-tools.sh >/dev/null

base=${BASE_IMAGE:-}
if [ -z "$base" ]; then
  slim=$(sed -n 's/^ARG BASE_IMAGE=//p' operator/Dockerfile)
  if podman image exists "$DEBIAN_BASE"; then
    base=$DEBIAN_BASE
  elif timeout 60 podman pull -q "$slim" >/dev/null 2>&1; then
    base=$slim
  else
    echo "no registry answered for $slim: making the Debian base from Debian's packages (make base-image)"
    bash images/base-image.sh "$DEBIAN_BASE"
    base=$DEBIAN_BASE
  fi
fi
echo "base: $base"

# Glassbox's own wheel, then each lock's wheels (images/wheelhouse.py keeps them by digest across builds).
rm -rf build/wheels/glassbox
"$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir build/wheels/glassbox . 2>&1 | grep -v '^WARNING: Location' || true
ls build/wheels/glassbox/glassbox-*.whl >/dev/null

timestamp=$(git log -1 --format=%ct 2>/dev/null || echo 0)
replaced=()
image_id() { podman image inspect "$1" --format '{{.Id}}' 2>/dev/null || true; }
for name in "${NAMES[@]}"; do
  flavour=${name#*-}
  [ "$flavour" != "$name" ] && suffix=-$flavour || suffix=""
  tag="$PREFIX/glassbox-${name%-cpu}:$VERSION$suffix"
  args=()
  case "${name%-cpu}" in
    operator) dockerfile=operator/Dockerfile lock=operator/requirements.lock ;;
    explainer) dockerfile=explainers/Dockerfile.explainer lock=explainers/requirements-explainer$suffix.lock ;;
    predictor)
      dockerfile=explainers/Dockerfile.predictor lock=""
      explainer="$PREFIX/glassbox-explainer:$VERSION$suffix"
      podman image exists "$explainer" || { echo "the predictor image is built on $explainer: build explainer$suffix first" >&2; exit 1; }
      args=(--build-arg EXPLAINER_IMAGE="$explainer")
      ;;
    *) echo "unknown image '$name': one of operator explainer predictor explainer-cpu predictor-cpu" >&2; exit 2 ;;
  esac
  if [ -n "$lock" ]; then
    find_links=()
    [ -z "$suffix" ] || [ -z "${TORCH_CPU_WHEELS:-}" ] || find_links=("$TORCH_CPU_WHEELS")
    "$PYTHON" images/wheelhouse.py "$lock" "build/wheels/$name" "${find_links[@]}" | grep -v '^WARNING: Location' || true
    args=(--build-arg LOCK="$lock" --build-arg WHEELS="build/wheels/$name" --build-arg LOCK_SHA256="$(sha256sum "$lock" | cut -d' ' -f1)"
      --build-arg GLASSBOX_SHA256="$(cat build/wheels/glassbox/glassbox-*.whl | sha256sum | cut -d' ' -f1)")
  fi
  previous=$(image_id "$tag")
  started=$(date +%s)
  # oci isolation with runc: the build steps run with no network (chroot isolation needs the host's).
  buildah bud --quiet --layers ${NO_CACHE:+--no-cache} --isolation oci --runtime runc --network none --timestamp "$timestamp" \
    --build-arg BASE_IMAGE="$base" "${args[@]}" -f "$dockerfile" -t "$tag" . >/dev/null
  size=$(podman image inspect "$tag" --format '{{.Size}}' | awk '{printf "%.0f MB", $1 / 1e6}')
  [ -z "$previous" ] || [ "$previous" = "$(image_id "$tag")" ] || replaced+=("$previous")
  # The bill of materials, from the image's own environment (images/sbom.py runs inside it).
  mkdir -p build/sbom
  podman run --rm -i --pull never --runtime runc --ulimit nofile=20000:20000 --ulimit nproc=32768:32768 --network none \
    --entrypoint python "$tag" - "glassbox-$name" "$VERSION" < images/sbom.py > "build/sbom/glassbox-$name.cdx.json"
  echo "$tag: $size, built in $(($(date +%s) - started)) s, bill of materials in build/sbom/glassbox-$name.cdx.json"
done
# The images these replaced, once nothing names them: newest first, as an old predictor holds its old
# explainer (a CUDA image is 6.5 GB).
for ((i = ${#replaced[@]} - 1; i >= 0; i--)); do podman rmi "${replaced[i]}" >/dev/null 2>&1 || true; done
"$PYTHON" images/licences.py $(for name in "${NAMES[@]}"; do echo "build/sbom/glassbox-$name.cdx.json"; done)
