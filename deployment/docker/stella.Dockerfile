# The Stella service images, one target each: logserver, signer (which also
# carries the first-start bootstrap and the SoftHSM2 module), witness and
# mirror (the daily export job and the auditors' tool).
#
# The Go binaries are built outside (`make images`: the host's Go 1.26, with
# -tags batched_queue, into bin/docker/) and copied in, so a build needs no
# network beyond Debian's mirror; the base is the only image named, and
# deployment/docker/base-image.sh makes it where nothing can be pulled.
# Every image runs as the unprivileged user stella (uid 10001).
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS runtime
RUN groupadd --system --gid 10001 stella \
 && useradd --system --uid 10001 --gid stella --no-create-home --home-dir /var/lib/stella --shell /usr/sbin/nologin stella \
 && install -d -o stella -g stella -m 0755 /var/lib/stella \
 && install -d -o stella -g stella -m 0700 /var/lib/stella/logserver /var/lib/stella/signer /var/lib/stella/witness /var/lib/stella/mirror /run/mysqld \
 && install -d -o stella -g stella -m 0755 /var/lib/stella/trust
COPY bin/docker/healthcheck /usr/local/bin/healthcheck
STOPSIGNAL SIGTERM
USER 10001:10001
WORKDIR /var/lib/stella

FROM runtime AS logserver
COPY bin/docker/trillian-storage.sql /usr/share/stella/trillian-storage.sql
COPY bin/docker/logserver /usr/local/bin/logserver
ENV STELLA_TRILLIAN_SCHEMA=/usr/share/stella/trillian-storage.sql
EXPOSE 3000
HEALTHCHECK --interval=5s --timeout=5s --start-period=120s --retries=3 CMD ["healthcheck", "http://127.0.0.1:3000/readyz"]
ENTRYPOINT ["/usr/local/bin/logserver"]
CMD ["-config", "/var/lib/stella/logserver/logserver.yaml"]

FROM runtime AS witness
COPY bin/docker/witness /usr/local/bin/witness
EXPOSE 7380
HEALTHCHECK --interval=5s --timeout=5s --start-period=60s --retries=3 CMD ["healthcheck", "http://127.0.0.1:7380/readyz"]
ENTRYPOINT ["/usr/local/bin/witness"]
CMD ["serve", "-config", "/var/lib/stella/witness/witness.yaml"]

FROM runtime AS mirror
COPY bin/docker/mirror /usr/local/bin/mirror
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/mirror"]
CMD ["-h"]

FROM runtime AS signer
USER root
# libsofthsm2 is the development token's PKCS#11 module; a real HSM's module
# is mounted instead (see deployment/README.md).
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends libsofthsm2 \
 && rm -rf /var/lib/apt/lists/* /var/log/apt /var/log/dpkg.log
USER 10001:10001
COPY bin/docker/trillian-storage.sql /usr/share/stella/trillian-storage.sql
COPY bin/docker/signer bin/docker/bootstrap /usr/local/bin/
ENV SOFTHSM2_CONF=/var/lib/stella/signer/softhsm2.conf
EXPOSE 8090
HEALTHCHECK --interval=5s --timeout=5s --start-period=60s --retries=3 CMD ["healthcheck", "http://127.0.0.1:8090/readyz"]
ENTRYPOINT ["/usr/local/bin/signer"]
CMD ["serve", "-config", "/var/lib/stella/signer/signer.yaml"]

# Prometheus for the optional observability profile, from the binary
# `make prometheus-bin` builds from the Go module proxy (github.com/
# prometheus/prometheus, Apache-2.0) into bin/docker/; its web UI is not
# built in (the HTTP API, rules and alerts are), so no pull and no npm. The
# configuration and rules are mounted from deployment/observability/.
# Last, so that building the other targets never needs its binary.
FROM runtime AS prometheus
USER root
RUN install -d -o stella -g stella -m 0700 /var/lib/stella/prometheus
USER 10001:10001
COPY bin/docker/prometheus /usr/local/bin/prometheus
EXPOSE 9090
HEALTHCHECK --interval=5s --timeout=5s --start-period=30s --retries=3 CMD ["healthcheck", "http://127.0.0.1:9090/-/ready"]
ENTRYPOINT ["/usr/local/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/var/lib/stella/prometheus", "--storage.tsdb.retention.time=90d"]
