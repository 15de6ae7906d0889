#!/usr/bin/env bash
# Cold, consistent backup of a compose appliance: every volume archived at
# one moment, with the services stopped for the time it takes (about a
# minute), then started again. See deployment/README.md, "Backup and restore".
#
#   deployment/backup.sh [-p PROJECT] OUTDIR
#
# Run from the repository root (the compose file's directory). COMPOSE
# overrides the compose command (default: docker compose -p PROJECT).
set -euo pipefail
project=stella
if [ "${1:-}" = "-p" ]; then project=$2; shift 2; fi
[ $# -eq 1 ] || { echo "usage: $0 [-p PROJECT] OUTDIR" >&2; exit 2; }
out=$(mkdir -p "$1" && cd "$1" && pwd)
compose=${COMPOSE:-docker compose -p $project}
base=${BASE_IMAGE:-debian:bookworm-slim}
volumes="mariadb-data signer-data logserver-data witness-data trust"

for v in $volumes; do
  docker volume inspect "${project}_$v" >/dev/null || { echo "backup: no volume ${project}_$v" >&2; exit 1; }
done
echo "backup: stopping $project"
$compose stop
trap '$compose up -d >/dev/null 2>&1 || true' EXIT
for v in $volumes; do
  docker run --rm --network none --user 0 -v "${project}_$v:/v:ro" -v "$out:/out" "$base" \
    tar --numeric-owner -C /v -czf "/out/$v.tar.gz" .
done
# The tree size this backup holds: restore.sh refuses to restore it over a
# log that published more.
$compose up -d --wait mariadb >/dev/null
$compose exec -T mariadb mariadb -N -e "SELECT COALESCE(MAX(TreeSize), 0) FROM rekor.TreeHead" >"$out/tree-size"
(cd "$out" && sha256sum ./*.tar.gz tree-size >SHA256SUMS)
trap - EXIT
$compose up -d --wait
echo "backup: $out (tree size $(cat "$out/tree-size"))"
