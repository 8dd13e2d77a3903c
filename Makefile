# Flux — two commands for a newcomer: `make demo` and `make test`.
SHELL := /bin/bash
SWIFT ?= swift
BIN_DEBUG := .build/debug/flux-node
BIN_RELEASE := .build/release/flux-node

.PHONY: all deps build release test unit integration demo bench format clean

all: build

deps:
	@scripts/install-deps.sh

build: deps
	$(SWIFT) build --product flux-node

release: deps
	$(SWIFT) build -c release --product flux-node

## Unit tests (the journal suite against SQLite and a private PostgreSQL), then integration
## tests that run the real flux-node binary.
test: deps
	@FLUX_WITH_POSTGRES=1 scripts/install-deps.sh
	$(SWIFT) build --build-tests
	@eval "$$(scripts/pg-test.sh start)"; trap 'scripts/pg-test.sh stop' EXIT; \
	  FLUX_NODE_BIN=$(CURDIR)/$(BIN_DEBUG) $(SWIFT) test --skip-build

## Simulated lenders, a 3-node cluster, a stream of checkouts with a live table, one node killed
## with SIGKILL mid-run, and a summary (every application terminal, none duplicated).
demo: build
	$(BIN_DEBUG) demo --examples .

## Figures for the issues' speed targets (release build); the journal's PostgreSQL figures run
## against a private PostgreSQL (scripts/pg-test.sh), stopped afterwards.
bench: release
	@FLUX_WITH_POSTGRES=1 scripts/install-deps.sh
	@eval "$$(scripts/pg-test.sh start)"; trap 'scripts/pg-test.sh stop' EXIT; \
	  $(BIN_RELEASE) bench --examples . --postgres "$$FLUX_TEST_POSTGRES"

format:
	$(SWIFT) format -i -r Sources Tests Package.swift

clean:
	rm -rf .build .flux
