#!/usr/bin/env bash
# bench/cluster.sh: what a cluster costs, on this machine. Brings up a cluster of one and a
# cluster of three with deploy/local/cluster.sh (every node its own network namespace, data
# under BENCH_WORK), and through one node of each measures, with bench/nfsbench.c (libnfs):
#   meta   N durable creates, stats and removes by 1 client, then by P clients;
#   write  a SEQ_MB MiB file copied in with nfs-cp (1 MiB writes + COMMIT);
# plus the CPU seconds of all the cluster's server processes over each run. In the cluster of
# three the client talks to a follower (every call shipped to the leader) and then to the
# leader. Prints a table; raw lines go to bench/results/<date>-cluster.txt. Run as root.
#
# Env: SLUICE_BIN (default: build), BENCH_WORK (/var/tmp/sluice-bench-cluster), META_N (2000),
#      META_P (8), SEQ_MB (256)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
CL=$ROOT/deploy/local/cluster.sh
WORK=${BENCH_WORK:-/var/tmp/sluice-bench-cluster}
META_N=${META_N:-2000} META_P=${META_P:-8} SEQ_MB=${SEQ_MB:-256}
say() { echo "[bench-cluster $(date -u +%H:%M:%S)] $*" >&2; }
[ "$(id -u)" = 0 ] || { say "run as root"; exit 1; }
. "$HERE/cluster-lib.sh"
mkdir -p "$WORK/bin" "$HERE/results"
gcc -O2 -Wall -o "$WORK/bin/nfsbench" "$HERE/nfsbench.c" -lnfs -lpthread
OUT=$HERE/results/$(date -u +%Y-%m-%dT%H%M%SZ)-cluster.txt
head -c $((SEQ_MB << 20)) /dev/urandom > "$WORK/seq.bin"

run() {  # run LABEL DIR NODE: the three measurements through NODE
  local label=$1 dir=$2 node=$3 url c0 c1 t0 ms
  url="nfs://10.78.0.10$node/?version=3"
  c0=$(cpu "$dir")
  m1=$(ip netns exec slc "$WORK/bin/nfsbench" meta "$url" "$META_N" 1)
  c1=$(cpu "$dir")
  echo "$label meta1 $m1 cpu_s=$(python3 -c "print(($c1-$c0)/$CLK)")" | tee -a "$OUT"
  c0=$(cpu "$dir")
  mp=$(ip netns exec slc "$WORK/bin/nfsbench" meta "$url" $((META_N / META_P)) "$META_P")
  c1=$(cpu "$dir")
  echo "$label meta$META_P $mp cpu_s=$(python3 -c "print(($c1-$c0)/$CLK)")" | tee -a "$OUT"
  c0=$(cpu "$dir"); t0=$(date +%s%N)
  ip netns exec slc nfs-cp "$WORK/seq.bin" "nfs://10.78.0.10$node//seq-$label.bin?version=3" >/dev/null
  ms=$(( ($(date +%s%N) - t0) / 1000000 )); c1=$(cpu "$dir")
  echo "$label write MBps=$(( SEQ_MB * 1000 / (ms > 0 ? ms : 1) )) ms=$ms cpu_s=$(python3 -c "print(($c1-$c0)/$CLK)")" | tee -a "$OUT"
}

for n in 1 3; do
  dir=$WORK/c$n
  rm -rf "$dir"
  say "cluster of $n"
  "$CL" up --nodes "$n" --bin "$BIN" --dir "$dir" >/dev/null
  if [ "$n" = 1 ]; then
    run one "$dir" 1
  else
    leader=$("$CL" status --dir "$dir" | awk '$NF=="leader" {print $2; exit}')
    follower=$(for i in 1 2 3; do [ "$i" = "$leader" ] || echo "$i"; done | head -1)
    run three-follower "$dir" "$follower"
    run three-leader "$dir" "$leader"
  fi
  "$CL" down --dir "$dir" >/dev/null 2>&1
done
rm -f "$WORK/seq.bin"
say "raw lines in $OUT"
