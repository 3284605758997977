#!/usr/bin/env bash
# Installs what building and testing paywatch needs, only when missing:
# a Rust toolchain (must already be there: rustup is not fetched), Debian's
# clang and libclang-dev (RocksDB's bindgen), a C++ compiler, GNU time (the
# end-to-end bench reads peak RSS from it), and for the streaming tests the
# tansu broker and the confluent-kafka client (see the end).
set -euo pipefail
# --test: also the Debian packages and the Kafka client the tests,
# demo-stream and the benches need (Prometheus, Chromium, confluent-kafka).
# --tools: only the two tools built from crates.io (the tansu broker and
# cargo-deny), each once into $PAYWATCH_TOOLS. They are the slow part of a
# fresh machine, so `make test` builds them while paywatch itself compiles.
mode="${1:-}"
with_tests=false
[ "$mode" = "--test" ] && with_tests=true
TOOLS="${PAYWATCH_TOOLS:-/var/tmp/paywatch-tools}"

# Builds one crates.io tool into $TOOLS/<name> unless it is there; its
# target dir and lock file stay outside the clone and go once it is built.
# $1 name, $2 binary, $3 optimisation level, rest: cargo install arguments.
build_tool() {
  local name="$1" bin="$2" opt="$3"
  shift 3
  [ -x "$TOOLS/$name/bin/$bin" ] && return 0
  local start=$SECONDS
  echo "paywatch: building $name into $TOOLS (once)" >&2
  (cd "$TOOLS" && CARGO_TARGET_DIR="$TOOLS/$name-target" CARGO_PROFILE_RELEASE_OPT_LEVEL="$opt" \
      cargo install "$@" --locked --root "$TOOLS/$name" >"$TOOLS/$name-install.log" 2>&1) \
    || { echo "paywatch: building $name failed; see $TOOLS/$name-install.log" >&2; return 1; }
  rm -rf "$TOOLS/$name-target"
  echo "paywatch: built $name in $((SECONDS - start)) s" >&2
}

if [ "$mode" = "--tools" ]; then
  mkdir -p "$TOOLS"
  # The broker keeps full optimisation: bench-stream measures through it.
  # cargo-deny checks a few hundred packages once a run, so opt-level 1
  # (about a third less compiling) costs it nothing visible.
  build_tool tansu tansu 3 tansu --features dynostore &
  broker=$!
  build_tool cargo-deny cargo-deny 1 cargo-deny &
  deny=$!
  status=0
  wait $broker || status=1
  wait $deny || status=1
  exit $status
fi

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

# The streaming tests' independent Kafka client: confluent-kafka from
# PyPI, which bundles a current librdkafka. (The broker: --tools.)
command -v python3 >/dev/null 2>&1 || { echo "paywatch: python3 is missing" >&2; exit 1; }
if ! python3 -c "import confluent_kafka" 2>/dev/null; then
  echo "paywatch: installing confluent-kafka (PyPI)" >&2
  python3 -m pip install --quiet confluent-kafka >/dev/null
fi
