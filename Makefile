# Stella transparency appliance. `make run` brings the local appliance up in
# the foreground; `make test` runs the whole test suite. Both install what is
# missing (Debian packages via apt, Go modules via the module proxy).

export GOTOOLCHAIN := local
GO      ?= go
TAGS    := batched_queue
GOFLAGS_BUILD := -tags $(TAGS) -trimpath
BIN     := bin

.PHONY: all deps build test vet run clean

all: build

# Debian packages the real parts need, and the Go modules.
deps:
	@./deployment/deps.sh
	@$(GO) mod download

build: deps
	$(GO) build $(GOFLAGS_BUILD) -o $(BIN)/ ./logserver/cmd/logserver ./witness/cmd/witness ./signer/cmd/signer \
		./mirror/cmd/mirror \
		./deployment/cmd/localrun ./testing/cmd/loadgen ./testing/cmd/compare

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
