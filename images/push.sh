#!/usr/bin/env bash
# make push REGISTRY=HOST/PATH: copy the images `make images` built to a registry, with skopeo.
#   TLS_VERIFY=false for a registry without TLS (a test registry on loopback).
# Then install the chart with those names (printed at the end).
set -euo pipefail
cd "$(dirname "$0")/.."
REGISTRY=${1:?name the registry and path, e.g. registry.example.com/team}
REGISTRY=${REGISTRY%/}
PREFIX=${IMAGE_PREFIX:-ghcr.io/glassbox-dev}
VERSION=${VERSION:-$(awk '$1 == "appVersion:" {gsub(/"/, "", $2); print $2}' charts/glassbox-operator/Chart.yaml)}
verify=${TLS_VERIFY:-true}
pushed=0
for name in operator explainer predictor; do
  for suffix in "" -cpu; do
    local_tag="$PREFIX/glassbox-$name:$VERSION$suffix"
    podman image exists "$local_tag" || continue
    remote="$REGISTRY/glassbox-$name:$VERSION$suffix"
    skopeo copy --quiet --dest-tls-verify="$verify" "containers-storage:$local_tag" "docker://$remote"
    echo "pushed $remote"
    pushed=$((pushed + 1))
  done
done
[ "$pushed" -gt 0 ] || { echo "push: no images named $PREFIX/glassbox-*:$VERSION here; run make images first" >&2; exit 1; }
cat <<EOT

helm install glassbox charts/glassbox-operator --namespace glassbox-system --create-namespace \\
  --set image.repository=$REGISTRY/glassbox-operator --set image.tag=$VERSION \\
  --set explainerImage=$REGISTRY/glassbox-explainer:$VERSION --set predictorImage=$REGISTRY/glassbox-predictor:$VERSION
EOT
