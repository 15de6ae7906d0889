#!/usr/bin/env bash
# Makes the base image every Dockerfile here names, debian:bookworm-slim,
# without pulling: debootstrap (minbase) from Debian's mirror, trimmed the way
# Debian's slim images are, then `docker import`. On a machine that can pull,
# nothing needs to run (`docker pull debian:bookworm-slim` gives the same
# base); on one that cannot, this is the only step. The root file system is
# kept as a tarball under $CACHE_DIR so a second machine or CI run only
# imports it.
#
#   deployment/docker/base-image.sh          # no-op if the image exists
#   BASE_IMAGE=debian:bookworm-slim DEBIAN_MIRROR=http://deb.debian.org/debian CACHE_DIR=.cache/docker
set -euo pipefail
tag=${BASE_IMAGE:-debian:bookworm-slim}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
cache=${CACHE_DIR:-.cache/docker}
suite=bookworm

if docker image inspect "$tag" >/dev/null 2>&1; then
  exit 0
fi
mkdir -p "$cache"
tarball="$cache/debian-$suite-slim.tar"
if [ ! -s "$tarball" ]; then
  command -v debootstrap >/dev/null || {
    [ "$(id -u)" -eq 0 ] || { echo "base-image: debootstrap is missing; install it as root: apt-get install -y debootstrap" >&2; exit 1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
  }
  [ "$(id -u)" -eq 0 ] || { echo "base-image: debootstrap needs root" >&2; exit 1; }
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  echo "base-image: debootstrap $suite from $mirror (a few minutes)"
  debootstrap --variant=minbase --no-merged-usr "$suite" "$root" "$mirror" >/dev/null || {
    tail -20 "$root/debootstrap/debootstrap.log" >&2 || true; exit 1; }
  # What Debian's slim images leave out, and keep leaving out on every
  # later apt-get install in the Dockerfiles.
  cat >"$root/etc/dpkg/dpkg.cfg.d/docker-slim" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
CFG
  cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'CFG'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
CFG
  rm -f "$root/etc/apt/sources.list"
  cat >"$root/etc/apt/sources.list.d/debian.sources" <<CFG
Types: deb
URIs: $mirror
Suites: $suite $suite-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: $suite-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
CFG
  find "$root/usr/share/doc" -mindepth 2 ! -name copyright -delete 2>/dev/null || true
  rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* \
    "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/log/* "$root"/debootstrap \
    "$root"/tmp/* "$root"/etc/machine-id
  : >"$root/etc/machine-id"
  tar --numeric-owner -C "$root" -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
fi
echo "base-image: importing $tarball as $tag"
docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["bash"]' \
  --change 'LABEL org.opencontainers.image.description=debootstrap-minbase-bookworm' \
  "$tarball" "$tag" >/dev/null
