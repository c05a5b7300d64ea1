# amsync: `make test` sets up everything it needs on a fresh machine (Go
# modules, the npm packages of jsbridge/, Debian's chromium) and runs every
# test.

GO        ?= go
NPM       ?= npm
BIN       := $(CURDIR)/bin
RELAY_BIN := $(BIN)/relay
DEMO_BIN  := $(BIN)/demo
CHROMIUM  := /usr/bin/chromium
FUZZTIME  ?= 5s

.PHONY: test go-test vet fuzz-smoke interop js-deps relay demo clean \
	jsbridge-bundle jsbridge-check browser-test chromium

test: vet jsbridge-check go-test fuzz-smoke interop browser-test

relay:
	@mkdir -p $(BIN)
	$(GO) build -o $(RELAY_BIN) ./cmd/relay

demo:
	@mkdir -p $(BIN)
	$(GO) build -o $(DEMO_BIN) ./cmd/demo

vet:
	@fmt=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './jsbridge/*')); \
	  if [ -n "$$fmt" ]; then echo "gofmt needed: $$fmt"; exit 1; fi
	$(GO) vet ./...

go-test:
	$(GO) test -count=1 ./...

# Every decoder's fuzz target runs briefly; what it finds fails the build
# and is kept under testdata/fuzz as a regression input. FUZZTIME=1m for a
# longer hunt. .ci/fuzz-one repeats a run once when Go 1.26's fuzz
# coordinator fails it at the time limit without any failing input.
FUZZ_TARGETS := \
	./engine/wire:FuzzDecode \
	./engine/wire:FuzzParseDocumentID \
	./crdt/amcheck:FuzzParseSyncMessage \
	./crdt/amcheck:FuzzParseChange \
	./crdt/amcheck:FuzzParseDocument \
	./engine/store:FuzzMemKey \
	./engine/store/badgerstore:FuzzDecodeKey \
	./cmd/relay:FuzzBackupDecoder \
	./cmd/relay:FuzzParseAssignment \
	./crdt:FuzzSyncMessageHeads \
	./crdt:FuzzSyncMessageNeeds \
	./crdt:FuzzSyncMessageChanges \
	./crdt:FuzzSyncMessageNeed \
	./engine/isolate:FuzzDecodeRequest \
	./engine/isolate:FuzzDecodeResponse

fuzz-smoke:
	@set -e; for t in $(FUZZ_TARGETS); do \
	  pkg=$${t%%:*}; fn=$${t##*:}; \
	  echo "fuzz $$pkg $$fn ($(FUZZTIME))"; \
	  .ci/fuzz-one $(GO) $$pkg $$fn $(FUZZTIME); \
	done

js-deps: jsbridge/node_modules/.package-lock.json

jsbridge/node_modules/.package-lock.json: jsbridge/package-lock.json jsbridge/package.json
	cd jsbridge && $(NPM) ci --no-audit --no-fund
	@touch $@

interop: relay demo js-deps
	cd jsbridge && RELAY_BIN=$(RELAY_BIN) DEMO_BIN=$(DEMO_BIN) $(NPM) run --silent test:interop

# The browser bridge: jsbridge/dist/ (committed, embedded in the Go
# binaries) is built from jsbridge/src. jsbridge-bundle rewrites it;
# jsbridge-check builds in memory and fails when dist/ differs.
jsbridge-bundle: js-deps
	cd jsbridge && $(NPM) run --silent build

jsbridge-check: js-deps
	cd jsbridge && $(NPM) run --silent check:bundle

chromium:
	@if [ ! -x $(CHROMIUM) ]; then \
	  echo "installing Debian's chromium"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y chromium || \
	    { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }; \
	fi

# End-to-end: the real cmd/demo (and cmd/relay's `relay doc` Go peer),
# headless Chromium profiles with real IndexedDB, driven by playwright-core.
browser-test: jsbridge-check chromium demo relay js-deps
	cd jsbridge && DEMO_BIN=$(DEMO_BIN) RELAY_BIN=$(RELAY_BIN) CHROMIUM_BIN=$(CHROMIUM) \
	  $(NPM) run --silent test:browser

# Side by side with the reference Node sync server (jsbridge/bench/): the
# same official 2.5.6 client against both, results in
# jsbridge/bench/results/, tables and charts in docs/benchmarks.md. Not part
# of `make test`: about 40 minutes. `make bench QUICK=1` runs a small set in
# a few minutes and only prints the tables.
# The long version of the simulations (`make test` runs 200 seeds and one
# chaos round): SIM_SEEDS seeds from SIM_START, then CHAOS_ROUNDS rounds of
# the real-process chaos test, each with a fresh seed it prints.
SIM_SEEDS    ?= 2000
SIM_START    ?= 1
CHAOS_ROUNDS ?= 5
.PHONY: sim
sim: js-deps
	$(GO) run ./simulations/cmd/simulate -seeds $(SIM_SEEDS) -start $(SIM_START) -parallel 2
	$(GO) test -count=$(CHAOS_ROUNDS) -run '^TestChaosRelayKillsAndFlakyNetwork$$' -v ./cmd/relay

.PHONY: bench
bench: relay js-deps
	cd jsbridge && RELAY_BIN=$(RELAY_BIN) BENCH_COMMAND='make bench$(if $(QUICK), QUICK=1)' \
	  node bench/driver.mjs $(if $(QUICK),--quick,--docs)

clean:
	rm -rf $(BIN)
