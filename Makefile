# amsync: `make test` sets up everything it needs on a fresh machine (Go
# modules, the npm packages of jsbridge/) and runs every test.

GO        ?= go
NPM       ?= npm
BIN       := $(CURDIR)/bin
RELAY_BIN := $(BIN)/relay
FUZZTIME  ?= 10s

.PHONY: test go-test vet fuzz-smoke interop js-deps relay clean

test: vet go-test fuzz-smoke interop

relay:
	@mkdir -p $(BIN)
	$(GO) build -o $(RELAY_BIN) ./cmd/relay

vet:
	@fmt=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './jsbridge/*')); \
	  if [ -n "$$fmt" ]; then echo "gofmt needed: $$fmt"; exit 1; fi
	$(GO) vet ./...

go-test:
	$(GO) test -count=1 ./...

# Every decoder's fuzz target runs briefly; what it finds fails the build
# and is kept under testdata/fuzz as a regression input.
fuzz-smoke:
	$(GO) test -run='^$$' -fuzz='^FuzzDecode$$' -fuzztime=$(FUZZTIME) ./engine/wire
	$(GO) test -run='^$$' -fuzz='^FuzzParseDocumentID$$' -fuzztime=$(FUZZTIME) ./engine/wire

js-deps: jsbridge/node_modules/.package-lock.json

jsbridge/node_modules/.package-lock.json: jsbridge/package-lock.json jsbridge/package.json
	cd jsbridge && $(NPM) ci --no-audit --no-fund
	@touch $@

interop: relay js-deps
	cd jsbridge && RELAY_BIN=$(RELAY_BIN) $(NPM) run --silent test:interop

clean:
	rm -rf $(BIN)
