# paywatch — the two commands a fresh machine needs are `make demo` and
# `make test`; each installs what is missing first.

CARGO_TARGET_DIR ?= $(CURDIR)/target
export CARGO_TARGET_DIR
BIN := $(CARGO_TARGET_DIR)/release/paywatch

.PHONY: deps build demo test bench bench-criterion bench-e2e clean

deps:
	@scripts/deps.sh

build: deps
	cargo build --release

## Generate ~2,000 households, audit them on an embedded RocksDB, show the result.
demo: build
	$(BIN) demo

## The whole suite: unit tests, property tests, integration tests (release
## profile: one RocksDB build serves the binary, the tests and the benches).
test: deps
	cargo test --release

## Criterion benches (decode, each rule) and the end-to-end bench (1M and 4M payments).
bench: bench-criterion bench-e2e

bench-criterion: deps
	cargo bench --bench decode --bench rules

bench-e2e: build
	scripts/bench-e2e.sh

clean:
	cargo clean
