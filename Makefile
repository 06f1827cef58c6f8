GO       ?= go
BIN      ?= bin/etcdsql
COMMIT   ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS  := $(if $(COMMIT),-X github.com/etcdsql/etcdsql/internal/release.commit=$(COMMIT))

.PHONY: build run cluster test test-race bench bench-compare fuzz lint clean

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/etcdsql

## run: one node on localhost:2379 (client) and :2380 (raft), data in ./default.etcdsql
run:
	$(GO) run -ldflags "$(LDFLAGS)" ./cmd/etcdsql --log-format text

## cluster: three members on 127.0.0.1 (clients on 2379, 2389, 2399); MYSQL_DSN=... shares a database
cluster: build
	ETCDSQL_BIN=$(BIN) deploy/local-cluster.sh

## test: every test, then the race detector over the packages with concurrency, then the
## correctness tests again on the other raft log store (boltdb; the default is wal)
test:
	$(GO) test -count=1 -timeout 30m ./...
	$(GO) test -race -count=1 -timeout 20m ./fsm/ ./rpc/ ./node/ ./sqlsink/ ./cluster/ ./internal/...
	ETCDSQL_RAFT_LOG_STORE=boltdb $(GO) test -count=1 -timeout 20m -run '$(LOG_STORE_TESTS)' ./node/ ./internal/e2e/

# The linearizability, watch-continuity, kill -9, outage, snapshot
# catch-up, rebuild and leader-stop tests, which every supported raft log
# store must pass.
LOG_STORE_TESTS = ^(TestClusterLinearizable|TestClusterWatchContinuityAcrossFailovers|TestCrashKeepsAcknowledgedWrites|TestSinkKill9KeepsDatabaseAndStoreEqual|TestSinkOutageRefusesWritesAndRecovers|TestClusterSnapshotCatchUp|TestClusterLeasesAcrossFailovers|TestClusterRebuiltFromDatabase|TestRestartAfterCrashInBootstrapFromDatabase|TestLeaderStopSettlesSyncWrites|TestLeaderChangeSettlesSyncWrites)$$

bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 2s -timeout 30m ./...

## bench-compare: the same loads on a real etcd 3.4 (Debian's etcd-server) and on etcdsql, interleaved,
## one table of medians and ratios; MYSQL_DSN=... adds MariaDB (sync acks) and the three-member loads;
## BENCH_COMPARE_FLAGS=--quick for a short run (go run ./internal/benchcompare --help lists the loads)
bench-compare: build
	$(GO) run ./internal/benchcompare --etcdsql $(BIN) --mysql-dsn "$(MYSQL_DSN)" $(BENCH_COMPARE_FLAGS)

## fuzz: each fuzz target for FUZZTIME (the seed corpora also run in `make test`)
FUZZTIME ?= 15s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./fsm/
	$(GO) test -run '^$$' -fuzz '^FuzzApply$$' -fuzztime $(FUZZTIME) ./fsm/
	$(GO) test -run '^$$' -fuzz '^FuzzGatewayBody$$' -fuzztime $(FUZZTIME) ./rpc/

lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

clean:
	rm -rf bin default.etcdsql cluster.etcdsql
