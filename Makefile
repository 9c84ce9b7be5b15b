# slotreg: `make run` starts a local registry, `make test` runs every test.
GO       ?= go
BIN      := bin
PKGS     := ./...
STATICCHECK ?= $(shell command -v staticcheck 2>/dev/null || echo $(HOME)/go/bin/staticcheck)

.PHONY: run test lint bench build clean

build:
	$(GO) build -o $(BIN)/registry ./cmd/registry

run: build
	$(BIN)/registry dev --listen 127.0.0.1:9600

# The e2e tests start real binaries; they are built into bin/ first.
test: build
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout 10m $(PKGS)

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1)
	$(GO) vet $(PKGS)
	$(STATICCHECK) $(PKGS)

bench:
	$(GO) test -run '^$$' -bench . -benchtime 1x -count 1 ./slot/ ./proto/ ./dataserver/
	$(GO) test -run '^$$' -bench . -benchmem ./slot/ ./proto/ ./dataserver/

clean:
	rm -rf $(BIN) .cluster
