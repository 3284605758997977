#!/usr/bin/env bash
# Runs each cargo-fuzz target (fuzz/) for FUZZ_SECONDS (180 by default) on
# the nightly toolchain, growing fuzz/corpus/<target>/. Any crasher is
# copied to fuzz/regressions/<target>/ (which `make test` replays) and the
# script fails. FUZZ_TARGETS picks targets (default: all four).
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS="${PAYWATCH_TOOLS:-/var/tmp/paywatch-tools}"
export PATH="$TOOLS/cargo-fuzz/bin:$PATH"
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "paywatch: installing cargo-fuzz into $TOOLS (once)" >&2
  cargo install cargo-fuzz --locked --root "$TOOLS/cargo-fuzz" >/dev/null
fi
rustup toolchain list | grep -q '^nightly' || { echo "paywatch: cargo-fuzz needs a nightly toolchain (rustup toolchain install nightly)" >&2; exit 1; }
seconds="${FUZZ_SECONDS:-180}"
target_dir="${FUZZ_TARGET_DIR:-/var/tmp/paywatch-fuzz-target}"
failed=0
for t in ${FUZZ_TARGETS:-payment roster death csv}; do
  echo "== fuzz $t for ${seconds}s" >&2
  if ! cargo +nightly fuzz run -O --target-dir "$target_dir" "$t" -- \
      -max_total_time="$seconds" -max_len=16384 -rss_limit_mb=2048 -print_final_stats=1; then
    failed=1
    mkdir -p "fuzz/regressions/$t"
    cp fuzz/artifacts/"$t"/* "fuzz/regressions/$t/" 2>/dev/null || true
    echo "paywatch: fuzz target $t failed; its input is in fuzz/regressions/$t/" >&2
  fi
done
exit "$failed"
