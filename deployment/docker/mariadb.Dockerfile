# MariaDB for the appliance, from Debian's packages. It runs as the
# unprivileged user stella (uid 10001, the same uid as the Stella images),
# and initialises an empty data volume with no password-less account at all:
# the only administrator is stella@localhost over the unix socket (peer
# credentials), which only the bootstrap job mounts. Services connect over
# TCP with their own accounts (deployment/bootstrap).
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends mariadb-server-core mariadb-client-core \
 && rm -rf /var/lib/apt/lists/* /var/log/apt /var/log/dpkg.log /var/lib/mysql \
 && groupadd --system --gid 10001 stella \
 && useradd --system --uid 10001 --gid stella --no-create-home --home-dir /var/lib/mysql --shell /usr/sbin/nologin stella \
 && install -d -o stella -g stella -m 0700 /var/lib/mysql /run/mysqld /tmp/mysql \
 && install -d -m 0755 /etc/mysql/conf.d
COPY deployment/docker/mariadb.cnf /etc/mysql/stella.cnf
COPY deployment/docker/mariadb-entrypoint.sh /usr/local/bin/mariadb-entrypoint
STOPSIGNAL SIGTERM
USER 10001:10001
EXPOSE 3306
HEALTHCHECK --interval=3s --timeout=5s --start-period=120s --retries=5 CMD ["mariadb", "--defaults-file=/etc/mysql/stella.cnf", "-e", "SELECT 1"]
ENTRYPOINT ["/usr/local/bin/mariadb-entrypoint"]
