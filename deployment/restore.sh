#!/usr/bin/env bash
# Restores a backup made by backup.sh onto a compose project that has no
# database volume (a new machine, or after `docker compose down -v`), and
# refuses to let the log take a write if that would sign a second history.
# See deployment/README.md, "Backup and restore".
#
#   deployment/restore.sh [-p PROJECT] [-checkpoint FILE] BACKUPDIR
#
# The restored tree must be at least as large as (1) the checkpoint in FILE,
# if given (the newest one a mirror, monitor or client holds), and (2) what
# the witness has cosigned for the log's origin. A witness volume or a
# logserver volume that exists is never overwritten: neither is ever rolled
# back (the logserver's state/ holds the highest heads it published, and it
# refuses to sign a second history against them), and the check trusts them. Run from the repository root; COMPOSE
# overrides the compose command (default: docker compose -p PROJECT).
set -euo pipefail
project=stella checkpoint=
while [ $# -gt 1 ]; do
  case $1 in
    -p) project=$2; shift 2 ;;
    -checkpoint) checkpoint=$2; shift 2 ;;
    *) break ;;
  esac
done
[ $# -eq 1 ] || { echo "usage: $0 [-p PROJECT] [-checkpoint FILE] BACKUPDIR" >&2; exit 2; }
in=$(cd "$1" && pwd)
compose=${COMPOSE:-docker compose -p $project}
base=${BASE_IMAGE:-debian:bookworm-slim}

(cd "$in" && sha256sum -c --quiet SHA256SUMS) || { echo "restore: $in does not match its SHA256SUMS" >&2; exit 1; }
if docker volume inspect "${project}_mariadb-data" >/dev/null 2>&1; then
  echo "restore: ${project}_mariadb-data exists; restore onto an empty project (docker compose down -v)" >&2
  exit 1
fi
keep=
for v in witness-data logserver-data; do
  docker volume inspect "${project}_$v" >/dev/null 2>&1 && keep="$keep $v"
done
# Create the project's volumes (with compose's labels), then fill them.
$compose up --no-start >/dev/null 2>&1
for v in mariadb-data signer-data logserver-data witness-data trust; do
  case " $keep " in *" $v "*)
    echo "restore: keeping the existing $v (its state is never rolled back)"
    continue ;;
  esac
  docker run --rm --network none --user 0 -v "${project}_$v:/v" -v "$in:/in:ro" "$base" \
    tar --numeric-owner -C /v -xzpf "/in/$v.tar.gz"
done

refuse() {
  echo "restore: REFUSED: $1" >&2
  echo "restore: the restored tree has $size entries; taking writes would sign a second history over sizes already published." >&2
  echo "restore: keep it stopped (or serve it read-only) and start a new tree (deployment/README.md, Freezing a tree)." >&2
  $compose stop >/dev/null 2>&1 || true
  exit 3
}
$compose up -d --wait mariadb >/dev/null
size=$($compose exec -T mariadb mariadb -N -e "SELECT COALESCE(MAX(TreeSize), 0) FROM rekor.TreeHead")
if [ -n "$checkpoint" ]; then
  seen=$(sed -n 2p "$checkpoint")
  [ "$seen" -le "$size" ] || refuse "$checkpoint is a checkpoint of size $seen"
fi
# The witness's view, through its monitoring API, before the logserver runs.
$compose up -d --wait witness >/dev/null
origin=$(docker run --rm --network none -v "${project}_trust:/t:ro" "$base" sed 's/+.*//' /t/log-note.vkey)
witness=$($compose port witness 7380)
cosigned=$(curl -fsS "http://$witness/$(printf %s "$origin" | sha256sum | cut -c1-64)/checkpoint" | sed -n 2p || true)
if [ -n "$cosigned" ] && [ "$cosigned" -gt "$size" ]; then
  refuse "the witness has cosigned size $cosigned for $origin"
fi
$compose up -d --wait
echo "restore: $project restored at tree size $size (witness at ${cosigned:-nothing})"
