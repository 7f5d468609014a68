#!/usr/bin/env bash
# The images' base when no container registry is reachable: Debian bookworm (CPython 3.11, glibc 2.36, as in
# python:3.11-slim) made from Debian's packages with mmdebstrap, then imported into podman's storage.
#
#   images/base-image.sh [TAG]      (default localhost/glassbox-base:bookworm)
#
# The packages come from the Debian archive this machine's apt already uses (its sources list), so the
# script works behind any mirror. The image holds python3, python3-venv (ensurepip, to make the images'
# virtual environment) and ca-certificates (the public roots, for reference data on https); no docs or
# manual pages, but every package's copyright file. /usr is merged by mmdebstrap's own hook, not by the
# usrmerge package, which would bring perl (55 MB).
# Merged /usr by mmdebstrap's hook rather than the usrmerge package, which would bring perl (55 MB).
set -euo pipefail
TAG=${1:-localhost/glassbox-base:bookworm}
SUITE=bookworm
# A fixed date makes two builds from the same packages byte-identical (mmdebstrap honours it).
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1704067200}

# The archive and security URIs from the host's apt sources (one-line and deb822 formats).
uris=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) {print $i; break}}'
      cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '$1 == "URIs:" {for (i = 2; i <= NF; i++) print $i}')
archive=$(printf '%s\n' $uris | grep -v -- '-security' | head -n1 || true)
security=$(printf '%s\n' $uris | grep -- '-security' | head -n1 || true)
if [ -z "$archive" ]; then
  echo "base-image: no Debian archive in /etc/apt/sources.list{,.d}; add one (apt must reach Debian's packages)" >&2
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# mmdebstrap keeps the file in the image under its own name: a fixed one keeps two builds identical.
sources=$work/debian.sources
{
  printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$archive" "$SUITE" "$SUITE"
  if [ -n "$security" ]; then
    printf '\nTypes: deb\nURIs: %s\nSuites: %s-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$security" "$SUITE"
  fi
} > "$sources"

for tool in mmdebstrap podman; do
  command -v "$tool" >/dev/null || { echo "base-image: $tool is missing: sudo apt-get install mmdebstrap podman (or make image-tools)" >&2; exit 1; }
done

mmdebstrap --quiet --variant=minbase --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr --include=python3,python3-venv,ca-certificates \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/log/* "$1"/etc/machine-id' \
  "$SUITE" "$work/base.tar" "$sources"

podman import --change 'CMD ["python3"]' --change 'ENV LANG=C.UTF-8' "$work/base.tar" "$TAG" >/dev/null
echo "$TAG: $(podman image inspect "$TAG" --format '{{.Size}}' | awk '{printf "%.0f MB", $1 / 1e6}')"
