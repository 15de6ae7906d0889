#!/usr/bin/env bash
# Installs the docker compose v2 CLI plugin from the Go module proxy:
#   compose-plugin.sh v2.40.3 ~/.docker/cli-plugins/docker-compose
set -euo pipefail
version=$1 out=$2
echo "compose-plugin: building github.com/docker/compose/v2@$version (minutes the first time)"
dir=$(cd "$(mktemp -d)" && GOFLAGS= GOTOOLCHAIN=local go mod download -json "github.com/docker/compose/v2@$version" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
[ -n "$dir" ] || { echo "compose-plugin: go mod download failed" >&2; exit 1; }
mkdir -p "$(dirname "$out")"
(cd "$dir" && GOFLAGS= GOTOOLCHAIN=local CGO_ENABLED=0 go build -trimpath \
  -ldflags "-s -w -X github.com/docker/compose/v2/internal.Version=$version" -o "$out.tmp" ./cmd)
mv "$out.tmp" "$out"
docker compose version
