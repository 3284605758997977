# paywatch — the two commands a fresh machine needs are `make demo` and
# `make test`; each installs what is missing first.

CARGO_TARGET_DIR ?= $(CURDIR)/target
export CARGO_TARGET_DIR
BIN := $(CARGO_TARGET_DIR)/release/paywatch

.PHONY: deps deps-test build demo demo-stream test soak bench bench-criterion bench-e2e bench-stream fuzz clean

# The broker the streaming tests and demos start (installed by deps).
export PAYWATCH_TOOLS ?= /var/tmp/paywatch-tools
export PAYWATCH_TANSU ?= $(PAYWATCH_TOOLS)/tansu/bin/tansu

deps:
	@scripts/deps.sh

# Also the broker, the Kafka client, Prometheus and Chromium.
deps-test:
	@scripts/deps.sh --test
	@scripts/deps.sh --tools

build: deps
	cargo build --release

## Generate ~2,000 households, audit them on an embedded RocksDB, show the result.
demo: build
	$(BIN) demo

## A local broker, a generated ledger loaded into it, `paywatch run`
## following it, and the alerts arriving on the alerts topic.
demo-stream: build deps-test
	scripts/demo-stream.sh

## The whole suite: unit tests, property tests, integration tests, the
## fault matrix (release profile: one RocksDB build serves the binary, the
## tests and the benches), then the dependency checks (deny.toml). On a
## fresh machine the broker and cargo-deny build while paywatch compiles.
test:
	@scripts/deps.sh --test
	scripts/deps.sh --tools & tools=$$!; \
	  cargo test --release --no-run && \
	  cargo bench --no-run --bench decode --bench rules --bench api --bench exchange; \
	  built=$$?; wait $$tools && [ $$built -eq 0 ]
	cargo test --release
	$(PAYWATCH_TOOLS)/cargo-deny/bin/cargo-deny --log-level error check licenses bans sources
	scripts/advisories.sh

## The unit and property tests with SOAK_SCALE (10) times the property
## tests' cases: each run draws new ones, as CI's do.
SOAK_SCALE ?= 10
soak: deps
	PROPTEST_CASES=$$((256 * $(SOAK_SCALE))) PAYWATCH_PROPTEST_SCALE=$(SOAK_SCALE) cargo test --release --lib

## Criterion benches (decode, each rule, the API, the repartition transport
## through the broker), the end-to-end file bench (1M and 4M payments) and
## the streaming bench.
bench: bench-criterion bench-e2e bench-stream

bench-criterion: deps-test
	cargo bench --bench decode --bench rules --bench api --bench exchange

bench-e2e: build
	scripts/bench-e2e.sh

## 1,000,000 payments through the real broker: consume-only against the
## full service, restarts and restores, the changelog, a standby taking
## over with and without a warm copy, and produce-to-alert latency at
## 5,000 payments/s.
bench-stream: build deps-test
	scripts/bench-stream.sh

## Each cargo-fuzz target for FUZZ_SECONDS (180); crashers land in
## fuzz/regressions/, which `make test` replays.
fuzz: deps
	scripts/fuzz.sh

clean:
	cargo clean
