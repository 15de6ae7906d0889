# Stella transparency appliance. `make run` brings the local appliance up in
# the foreground; `make test` runs the whole test suite. Both install what is
# missing (Debian packages via apt, Go modules via the module proxy).

export GOTOOLCHAIN := local
GO      ?= go
TAGS    := batched_queue
GOFLAGS_BUILD := -tags $(TAGS) -trimpath
BIN     := bin

.PHONY: all deps build test vet run clean compose-plugin base-image docker-bin images up down prometheus-bin observability

all: build

# Debian packages the real parts need, and the Go modules.
deps:
	@./deployment/deps.sh
	@$(GO) mod download

build: deps
	$(GO) build $(GOFLAGS_BUILD) -o $(BIN)/ ./logserver/cmd/logserver ./witness/cmd/witness ./signer/cmd/signer \
		./mirror/cmd/mirror \
		./deployment/cmd/localrun ./deployment/cmd/bootstrap ./testing/cmd/loadgen ./testing/cmd/compare

vet:
	$(GO) vet -tags $(TAGS) ./...

# The whole suite: unit tests and tests against real MariaDB, Trillian and
# the real clients (rekor-cli is installed into .cache/bin on first use).
test: deps vet
	$(GO) test -tags $(TAGS) -count=1 -timeout 80m ./...

# Foreground local appliance; state under .run/ is kept between runs.
run: build
	$(BIN)/localrun -dir .run -bin $(BIN)

clean:
	rm -rf $(BIN)

# --- docker compose: the production install (deployment/README.md) ---------

# The compose v2 plugin, built from the Go module proxy when missing.
COMPOSE_VERSION := v2.40.3
COMPOSE_PLUGIN  := $(HOME)/.docker/cli-plugins/docker-compose
COMPOSE         := docker compose

compose-plugin:
	@docker compose version >/dev/null 2>&1 || ./deployment/docker/compose-plugin.sh $(COMPOSE_VERSION) $(COMPOSE_PLUGIN)

# debian:bookworm-slim, made locally (debootstrap + docker import) when it
# cannot be pulled; the root file system is cached under .cache/docker.
base-image:
	@./deployment/docker/base-image.sh

# The binaries the images copy, built here (no Go toolchain in the images).
docker-bin: deps
	@mkdir -p $(BIN)/docker
	$(GO) build $(GOFLAGS_BUILD) -ldflags "-s -w" -o $(BIN)/docker/ ./logserver/cmd/logserver ./witness/cmd/witness \
		./signer/cmd/signer ./mirror/cmd/mirror ./deployment/cmd/bootstrap ./deployment/cmd/healthcheck
	@cp "$$($(GO) list -m -f '{{.Dir}}' github.com/google/trillian)/storage/mysql/schema/storage.sql" $(BIN)/docker/trillian-storage.sql
	@chmod 0644 $(BIN)/docker/trillian-storage.sql

images: compose-plugin base-image docker-bin
	$(COMPOSE) build

up: images
	$(COMPOSE) up -d --wait

down: compose-plugin
	$(COMPOSE) down

# Prometheus for the compose observability profile, built from the Go module
# proxy (its image is made like ours: no pull), without the service discovery
# plugins but file and HTTP (the compose targets are static). Grafana is not built: see
# deployment/README.md, Observability.
PROMETHEUS_VERSION := v0.316.0

prometheus-bin:
	@mkdir -p $(BIN)/docker
	GOBIN=$(abspath $(BIN)/docker) GOFLAGS= $(GO) install -tags remove_all_sd -ldflags "-s -w" \
		github.com/prometheus/prometheus/cmd/prometheus@$(PROMETHEUS_VERSION)

observability: images prometheus-bin
	$(COMPOSE) --profile observability build prometheus
	$(COMPOSE) --profile observability up -d --wait
