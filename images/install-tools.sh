#!/usr/bin/env bash
# What `make images` needs, from Debian's packages: buildah builds the images (no Docker engine), podman
# and runc run them (crun cannot set the rlimits podman asks for on some machines), mmdebstrap makes the
# base from Debian's packages when no registry is reachable, skopeo copies them to a registry, and
# docker-registry (the CNCF distribution registry) is the loopback registry `make images-test` pushes to.
set -euo pipefail
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
missing=()
for tool in buildah:buildah podman:podman runc:runc mmdebstrap:mmdebstrap skopeo:skopeo docker-registry:docker-registry; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool##*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} (Debian)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
echo "image tools ready: $(buildah --version), $(podman --version)"
