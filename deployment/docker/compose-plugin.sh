#!/usr/bin/env bash
# Installs the docker compose v2 CLI plugin, built from the Go module proxy:
#   compose-plugin.sh v2.40.3 ~/.docker/cli-plugins/docker-compose
# The binary is kept in .cache/bin (with the other peer tools) so a CI
# cache that keeps .cache builds it once.
set -euo pipefail
version=$1 out=$2
cache=${CACHE_BIN:-.cache/bin}/docker-compose-$version
# Absolute: the build runs in the module's directory.
cache=$(realpath -m "$cache")
if [ ! -x "$cache" ]; then
  echo "compose-plugin: building github.com/docker/compose/v2@$version (minutes the first time)"
  dir=$(cd "$(mktemp -d)" && GOFLAGS= GOTOOLCHAIN=local go mod download -json "github.com/docker/compose/v2@$version" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
  [ -n "$dir" ] || { echo "compose-plugin: go mod download failed" >&2; exit 1; }
  mkdir -p "$(dirname "$cache")"
  (cd "$dir" && GOFLAGS= GOTOOLCHAIN=local CGO_ENABLED=0 go build -trimpath \
    -ldflags "-s -w -X github.com/docker/compose/v2/internal.Version=$version" -o "$cache.tmp" ./cmd)
  mv "$cache.tmp" "$cache"
fi
mkdir -p "$(dirname "$out")"
cp "$cache" "$out.tmp" && mv "$out.tmp" "$out"
docker compose version
