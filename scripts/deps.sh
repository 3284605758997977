#!/usr/bin/env bash
# Installs what building and testing paywatch needs, only when missing:
# a Rust toolchain (must already be there: rustup is not fetched), Debian's
# clang and libclang-dev (RocksDB's bindgen), a C++ compiler, GNU time (the
# end-to-end bench reads peak RSS from it), and for the streaming tests the
# tansu broker and the confluent-kafka client (see the end).
set -euo pipefail
# --test: also what the tests, demo-stream and the benches need (a broker,
# a Kafka client, Prometheus, Chromium).
with_tests=false
[ "${1:-}" = "--test" ] && with_tests=true

need=()
command -v cargo >/dev/null 2>&1 || { echo "paywatch: cargo is missing; install a Rust toolchain (rustup) first" >&2; exit 1; }
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
installed clang || need+=(clang)
installed libclang-dev || need+=(libclang-dev)
# librdkafka (built from source by rdkafka-sys) links OpenSSL.
installed libssl-dev || need+=(libssl-dev)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
if $with_tests; then
  # The operators' tests: the real Prometheus and promtool.
  command -v promtool >/dev/null 2>&1 || need+=(prometheus)
  # The review page's test: headless Chromium, its WebDriver, and CJK fonts
  # (so the kept screenshot shows Chinese, not boxes).
  [ -x /usr/bin/chromium ] || need+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
  installed fonts-noto-cjk || need+=(fonts-noto-cjk)
  # The security tests (a certificate, an HTTPS client) and the fault
  # script (a tmpfs for the full-disk fault).
  command -v openssl >/dev/null 2>&1 || need+=(openssl)
  command -v curl >/dev/null 2>&1 || need+=(curl)
  command -v mount >/dev/null 2>&1 || need+=(mount)
  # The offline advisory check makes a git copy of the RustSec snapshot.
  command -v git >/dev/null 2>&1 || need+=(git)
fi
command -v c++ >/dev/null 2>&1 || need+=(g++)
[ -x /usr/bin/time ] || need+=(time)
command -v make >/dev/null 2>&1 || need+=(make)

if [ ${#need[@]} -gt 0 ]; then
  echo "paywatch: installing ${need[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

$with_tests || exit 0

# The streaming tests and demos: a Kafka-protocol broker (tansu, built once
# into a cache outside the clone, ~9 minutes) and an independent client
# (confluent-kafka from PyPI, which bundles a current librdkafka).
TOOLS="${PAYWATCH_TOOLS:-/var/tmp/paywatch-tools}"
mkdir -p "$TOOLS"
if [ ! -x "$TOOLS/tansu/bin/tansu" ]; then
  echo "paywatch: building the tansu broker into $TOOLS (once)" >&2
  # Build outside the clone so its target dir and lock file stay out of it.
  (cd "$TOOLS" && CARGO_TARGET_DIR="$TOOLS/tansu-target" cargo install tansu --locked --features dynostore --root "$TOOLS/tansu" >"$TOOLS/tansu-install.log" 2>&1) \
    || { echo "paywatch: building tansu failed; see $TOOLS/tansu-install.log" >&2; exit 1; }
  rm -rf "$TOOLS/tansu-target"
fi
# cargo-deny for the dependency checks (licences, bans, sources).
if [ ! -x "$TOOLS/cargo-deny/bin/cargo-deny" ]; then
  echo "paywatch: installing cargo-deny into $TOOLS (once)" >&2
  (cd "$TOOLS" && CARGO_TARGET_DIR="$TOOLS/cargo-deny-target" cargo install cargo-deny --locked --root "$TOOLS/cargo-deny" >"$TOOLS/cargo-deny-install.log" 2>&1) \
    || { echo "paywatch: installing cargo-deny failed; see $TOOLS/cargo-deny-install.log" >&2; exit 1; }
  rm -rf "$TOOLS/cargo-deny-target"
fi
command -v python3 >/dev/null 2>&1 || { echo "paywatch: python3 is missing" >&2; exit 1; }
if ! python3 -c "import confluent_kafka" 2>/dev/null; then
  echo "paywatch: installing confluent-kafka (PyPI)" >&2
  python3 -m pip install --quiet confluent-kafka >/dev/null
fi
