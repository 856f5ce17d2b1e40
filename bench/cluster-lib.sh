# Sourced by bench/cluster.sh and bench/replication.sh (needs ROOT and say): the binary under
# test, and the CPU the cluster's server processes used.

# The binary: SLUICE_BIN, or a release build of this checkout.
BIN=${SLUICE_BIN:-}
if [ -z "$BIN" ]; then
  (cd "$ROOT" && cargo build --release -q -p nfs-server --bin sluice)
  BIN=$ROOT/target/release/sluice
fi
CLK=$(getconf CLK_TCK)

cpu() {  # cpu DIR: CPU ticks of every running node process of the cluster in DIR
  local t=0 p
  for p in "$1"/n*/pid; do
    p=$(cat "$p")
    [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo "$t"
}
