#!/usr/bin/env bash
# Build kube-apiserver and kube-controller-manager 1.20.2 from Debian bookworm's
# source package, once, into a cache outside the repository.
#
# Why from source: no cluster, no Docker engine and no download site other than
# the package registries exist on the machines this project is tested on, and
# Debian ships the Kubernetes 1.20.2 source (with vendor/) but no server binaries.
#
# Go 1.19 (Debian's golang-go) crashes the 1.20 apiserver at run time through
# the vendored github.com/modern-go/reflect2 v1.0.1, so that folder is replaced
# by Debian's reflect2 1.0.2 before building.
set -euo pipefail

CACHE="${GLASSBOX_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/glassbox}"
BIN="$CACHE/kubernetes-1.20.2/bin"
if [ -x "$BIN/kube-apiserver" ] && [ -x "$BIN/kube-controller-manager" ]; then
  echo "kubernetes 1.20.2 binaries cached in $BIN"
  exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

# A deb-src entry, when the machine has none: the twin of its own first `deb`
# entry (the same mirror, suites and keys), so no host name is written here.
if ! apt-get source --print-uris kubernetes >/dev/null 2>&1; then
  SRC_LIST=/etc/apt/sources.list.d/glassbox-src.sources
  twin=""
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    twin=$(awk 'BEGIN{RS="";ORS="\n\n"} /(^|\n)Types:[ \t]*deb([ \t]|\n|$)/ && !done {sub(/Types:[ \t]*deb/,"Types: deb-src"); print; done=1}' "$f")
    [ -n "$twin" ] && break
  done
  if [ -z "$twin" ] && [ -f /etc/apt/sources.list ]; then
    # One-line format: `deb [options] URI SUITE COMPONENTS...` becomes a deb-src line.
    twin=$(grep -E '^[[:space:]]*deb[[:space:]]' /etc/apt/sources.list | head -1 | sed -E 's/^[[:space:]]*deb[[:space:]]/deb-src /')
    SRC_LIST=/etc/apt/sources.list.d/glassbox-src.list
  fi
  [ -n "$twin" ] || { echo "no apt source to mirror for a deb-src entry; add one for Debian bookworm main" >&2; exit 1; }
  printf '%s\n' "$twin" | $SUDO tee "$SRC_LIST" >/dev/null
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
  golang-go rsync dpkg-dev golang-github-modern-go-reflect2-dev >/dev/null

WORK="$CACHE/build"
rm -rf "$WORK"
mkdir -p "$WORK"
cd "$WORK"
apt-get source --download-only kubernetes >/dev/null
dpkg-source --no-check -x kubernetes_*.dsc src >/dev/null
cd src

# Swap the vendored reflect2 1.0.1 for Debian's 1.0.2 and record it.
REFLECT2_SRC=/usr/share/gocode/src/github.com/modern-go/reflect2
rm -rf vendor/github.com/modern-go/reflect2
mkdir -p vendor/github.com/modern-go/reflect2
cp "$REFLECT2_SRC"/*.go vendor/github.com/modern-go/reflect2/
rm -f vendor/github.com/modern-go/reflect2/*_test.go
[ -f "$REFLECT2_SRC/go.mod" ] && cp "$REFLECT2_SRC/go.mod" vendor/github.com/modern-go/reflect2/ || true
sed -i 's#github.com/modern-go/reflect2 v1.0.1#github.com/modern-go/reflect2 v1.0.2#' go.mod vendor/modules.txt
find staging -name go.mod -exec sed -i 's#github.com/modern-go/reflect2 v1.0.1#github.com/modern-go/reflect2 v1.0.2#' {} +

echo "building kube-apiserver and kube-controller-manager (about 8 minutes on 2 cores)"
export GOFLAGS=-mod=vendor GO111MODULE=on
make WHAT="cmd/kube-apiserver cmd/kube-controller-manager" >"$WORK/make.log" 2>&1 || {
  tail -40 "$WORK/make.log"; exit 1; }

mkdir -p "$BIN"
cp _output/bin/kube-apiserver _output/bin/kube-controller-manager "$BIN/"
cd "$CACHE"
rm -rf "$WORK"
echo "kubernetes 1.20.2 binaries built into $BIN"
