# slotreg: `make run` starts a local registry, `make test` runs every test.
GO       ?= go
BIN      := bin
PKGS     := ./...
STATICCHECK ?= $(shell command -v staticcheck 2>/dev/null || echo $(HOME)/go/bin/staticcheck)

.PHONY: run test lint bench build clean fuzz fuzz-brief partitions

# pkg:Target for every fuzz target; the corpora are in each package's testdata/fuzz.
# The brief run leaves out the RESP framing scanner: it is so fast that a
# 4 s run sometimes ends in the fuzzer's own "context deadline exceeded";
# its seeds run with go test, and make fuzz runs it for FUZZTIME.
FUZZ_BRIEF := proto:FuzzParseCommands proto:FuzzParseBinary sessionserver:FuzzSessionCommands dataserver:FuzzDataCommands
FUZZ_TARGETS := $(FUZZ_BRIEF) internal/respguard:FuzzScanner
FUZZTIME ?= 1m

build:
	$(GO) build -o $(BIN)/registry ./cmd/registry

run: build
	$(BIN)/registry dev --listen 127.0.0.1:9600

# The e2e tests start real binaries; they are built into bin/ first.
test: build
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout 13m $(PKGS)
	$(MAKE) fuzz-brief

# Issue 19's partition sequence (data node, then meta leader, cut off in
# network namespaces), PARTITION_RUNS times; as root.
PARTITION_RUNS ?= 20
partitions: build
	$(GO) test -count=$(PARTITION_RUNS) -timeout 60m -run '^TestPartitionDataThenMetaLeader$$' -v ./e2e/

# Each fuzz target for a few seconds (make test), or FUZZTIME each (make fuzz).
fuzz-brief:
	$(MAKE) fuzz FUZZTIME=4s FUZZ_TARGETS="$(FUZZ_BRIEF)"

fuzz:
	@for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz $$pkg $$name for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$name$$" -fuzztime $(FUZZTIME) ./$$pkg/ || exit 1; \
	done

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1)
	$(GO) vet $(PKGS)
	$(STATICCHECK) $(PKGS)

# The Go micro-benchmarks of the hot paths, then a short standard suite
# against a local cluster of real processes, each scenario also run
# against its peer (a redis-server and an etcd the harness starts and
# stops: apt-get install -y redis-server etcd-server); the report ends
# with issue 18's table, every ratio from this one run. It runs twice:
# the roles as separate processes (1 meta, 2 data nodes, 1 session), then
# a registry of one `registry node` process, the shape of the single
# redis-server it is compared with. Figures: bench/RESULTS.md.
bench: build
	$(GO) build -o $(BIN)/registry-bench ./bench/cmd/registry-bench
	$(GO) test -run '^$$' -bench . -benchmem ./slot/ ./proto/ ./dataserver/
	$(BIN)/registry-bench suite --local --bin $(CURDIR)/$(BIN)/registry --duration 5s --peer redis=local --peer etcd=local
	$(BIN)/registry-bench suite --local --integrated --data 1 --replicas 1 --bin $(CURDIR)/$(BIN)/registry --duration 5s --peer redis=local --peer etcd=local

clean:
	rm -rf $(BIN) .cluster
