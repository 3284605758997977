#!/usr/bin/env bash
# Installs what building and testing paywatch needs, only when missing:
# a Rust toolchain (must already be there: rustup is not fetched), Debian's
# clang and libclang-dev (RocksDB's bindgen), a C++ compiler, GNU time (the
# end-to-end bench reads peak RSS from it).
set -euo pipefail

need=()
command -v cargo >/dev/null 2>&1 || { echo "paywatch: cargo is missing; install a Rust toolchain (rustup) first" >&2; exit 1; }
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
installed clang || need+=(clang)
installed libclang-dev || need+=(libclang-dev)
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
