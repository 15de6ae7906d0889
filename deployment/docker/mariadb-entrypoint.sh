#!/bin/sh
# Initialises an empty data directory (accounts: stella@localhost by unix
# socket only; no password-less account over TCP), then runs mariadbd in the
# foreground. mariadbd shuts down cleanly on SIGTERM.
set -eu
if [ ! -d /var/lib/mysql/mysql ]; then
  mariadb-install-db --defaults-file=/etc/mysql/stella.cnf --user=stella \
    --auth-root-authentication-method=socket --skip-test-db >/dev/null
fi
exec mariadbd --defaults-file=/etc/mysql/stella.cnf "$@"
