#!/usr/bin/env bash
# make push REGISTRY=HOST/PATH [IMAGES="operator explainer ..."]: copy the images `make images` built to a
# registry with skopeo (no Docker engine), then print the helm install that deploys them.
#   images/push.sh REGISTRY [NAME ...]    NAME: operator explainer predictor explainer-cpu predictor-cpu
#                                         (default: each of them that is built here)
#   TLS_VERIFY=false for a registry without TLS (a test registry on loopback).
set -euo pipefail
cd "$(dirname "$0")/.."
REGISTRY=${1:?name the registry and path, e.g. registry.example.com/team}
REGISTRY=${REGISTRY%/}
shift
PREFIX=${IMAGE_PREFIX:-ghcr.io/glassbox-dev}
VERSION=${VERSION:-$(awk '$1 == "appVersion:" {gsub(/"/, "", $2); print $2}' charts/glassbox-operator/Chart.yaml)}
NAMES=("$@")
[ ${#NAMES[@]} -gt 0 ] || NAMES=(operator explainer predictor explainer-cpu predictor-cpu)
pushed=0
for name in "${NAMES[@]}"; do
  suffix=""
  [ "$name" = "${name%-cpu}" ] || suffix=-cpu
  image="glassbox-${name%-cpu}:$VERSION$suffix"
  if ! podman image exists "$PREFIX/$image"; then
    [ $# -eq 0 ] && continue  # pushing whatever is built
    echo "push: $PREFIX/$image is not built here: make images IMAGES=$name" >&2
    exit 1
  fi
  skopeo copy --quiet --dest-tls-verify="${TLS_VERIFY:-true}" "containers-storage:$PREFIX/$image" "docker://$REGISTRY/$image"
  echo "pushed $REGISTRY/$image"
  pushed=$((pushed + 1))
done
[ "$pushed" -gt 0 ] || { echo "push: no images named $PREFIX/glassbox-*:$VERSION here; run make images first" >&2; exit 1; }
cat <<EOT

Install the chart with them (add -cpu to the explainer and predictor tags for the CPU-only flavour):
  helm install glassbox-operator charts/glassbox-operator --namespace ml --create-namespace \\
    --set image.repository=$REGISTRY/glassbox-operator --set image.tag=$VERSION \\
    --set explainerImage=$REGISTRY/glassbox-explainer:$VERSION --set predictorImage=$REGISTRY/glassbox-predictor:$VERSION
EOT
