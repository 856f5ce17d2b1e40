#!/usr/bin/env bash
# Builds every fuzz target and runs each for SECONDS (default 5; the issue's bar is 60).
# Needs cargo-fuzz and a nightly toolchain (sanitizers). Exits non-zero on the first crash.
# Usage: fuzz/run.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-5}; shift || true
tc=+nightly
rustup toolchain list 2>/dev/null | grep -q '^nightly' || { tc=""; export RUSTC_BOOTSTRAP=1; }
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo $tc fuzz list)
cargo $tc fuzz build -O
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  out=$(cargo $tc fuzz run -O "$t" "corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=1024 -max_len=65536 2>&1) || {
    echo "$out" | tail -40; echo "fuzz: $t FAILED"; exit 1; }
  echo "fuzz: $t ok ($(echo "$out" | grep -o 'Done [0-9]* runs' | tail -1))"
done
