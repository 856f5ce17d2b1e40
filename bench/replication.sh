#!/usr/bin/env bash
# bench/replication.sh: what copies of file data cost (issue 18), on this machine. Brings up
# deploy/local/cluster.sh clusters (every node its own network namespace; nvme store on a
# device file under BENCH_WORK) and, through the metadata leader:
#   save     a SEQ_MB MiB checkpoint written with nfs-cp (1 MiB writes, then COMMIT);
#   restore  the same file read back with nfs-cp;
# with the CPU seconds of all the cluster's server processes over each, per GiB. Clusters:
#   one       a cluster of one
#   three-r1  three nodes, replicas = 1
#   three-r3  three nodes, replicas = 3
#   four-r3   four nodes, replicas = 3, then the rebuild: a node holding a copy (not the
#             leader) is killed with kill -9 and removed; the time until the leader reports
#             the copy made again on the fourth node (copies_restored_bytes), as MB/s. This
#             includes the removal and up to 2 s until the rebuild task looks.
# Prints the lines; raw lines also go to bench/results/<date>-replication.txt. Run as root.
#
# Env: SLUICE_BIN (default: build), BENCH_WORK (/var/tmp/sluice-bench-replication),
#      SEQ_MB (1024), CLUSTERS ("one three-r1 three-r3 four-r3")
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
CL=$ROOT/deploy/local/cluster.sh
WORK=${BENCH_WORK:-/var/tmp/sluice-bench-replication}
SEQ_MB=${SEQ_MB:-1024}
CLUSTERS=${CLUSTERS:-one three-r1 three-r3 four-r3}
say() { echo "[bench-replication $(date -u +%H:%M:%S)] $*" >&2; }
[ "$(id -u)" = 0 ] || { say "run as root"; exit 1; }
. "$HERE/cluster-lib.sh"
mkdir -p "$WORK" "$HERE/results"
OUT=$HERE/results/$(date -u +%Y-%m-%dT%H%M%SZ)-replication.txt
head -c $((SEQ_MB << 20)) /dev/urandom > "$WORK/seq.bin"
want=$(sha256sum < "$WORK/seq.bin" | cut -c1-16)

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
metric() {  # metric DIR NODE NAME: a sluice_metadata_log figure of node NODE
  ip netns exec "slc-n$2" curl -s http://127.0.0.1:9049/metrics \
    | awk -v m="$3" -F'[="}]' '$1=="sluice_metadata_log{metric" && $3==m {print $NF}' | tr -d ' '
}

timed() {  # timed LABEL WHAT DIR CMD...: runs CMD, prints MB/s and CPU s per GiB
  local label=$1 what=$2 dir=$3 c0 c1 t0 ms
  shift 3
  c0=$(cpu "$dir"); t0=$(now_ms)
  "$@" >/dev/null
  ms=$(( $(now_ms) - t0 )); c1=$(cpu "$dir")
  echo "$label $what MBps=$(( SEQ_MB * 1000 / (ms > 0 ? ms : 1) )) ms=$ms cpu_s_per_GiB=$(python3 -c "print(round(($c1-$c0)/$CLK/($SEQ_MB/1024), 2))")" | tee -a "$OUT"
}

for c in $CLUSTERS; do
  case $c in
    one) n=1 r=1;; three-r1) n=3 r=1;; three-r3) n=3 r=3;; four-r3) n=4 r=3;;
    *) say "unknown cluster $c"; exit 2;;
  esac
  dir=$WORK/$c
  rm -rf "$dir"
  say "$c: $n node(s), replicas $r"
  "$CL" up --nodes "$n" --replicas "$r" --store nvme --bin "$BIN" --dir "$dir" >/dev/null
  leader=$("$CL" status --dir "$dir" | awk '$NF=="leader" {print $2; exit}')
  url="nfs://10.78.0.10$leader//ckpt.bin?version=3"
  timed "$c" save "$dir" ip netns exec slc nfs-cp "$WORK/seq.bin" "$url"
  rm -f "$WORK/back.bin"
  timed "$c" restore "$dir" ip netns exec slc nfs-cp "$url" "$WORK/back.bin"
  got=$(sha256sum < "$WORK/back.bin" | cut -c1-16)
  [ "$got" = "$want" ] || { say "$c: the file read back differs ($got, want $want)"; exit 1; }
  "$CL" sluice "$leader" residency /ckpt.bin --dir "$dir" 2>/dev/null | grep placement | sed "s/^/$c /" | tee -a "$OUT"
  if [ "$c" = four-r3 ]; then
    holders=$("$CL" sluice "$leader" residency /ckpt.bin --dir "$dir" 2>/dev/null \
      | awk '/^placement/ {gsub(",", ""); for (i = 3; i <= NF && $i ~ /^[0-9]+$/; i++) print $i}')
    victim=$(for h in $holders; do [ "$h" = "$leader" ] || echo "$h"; done | head -1)
    before=$(metric "$dir" "$leader" copies_restored_bytes)
    "$CL" kill "$victim" --dir "$dir" >/dev/null 2>&1
    t0=$(now_ms)
    "$CL" sluice "$leader" cluster remove "$victim" --dir "$dir" >/dev/null
    done_at=""
    for _ in $(seq 1200); do
      b=$(metric "$dir" "$leader" copies_restored_bytes)
      if [ "${b:-0}" -ge $(( ${before:-0} + (SEQ_MB << 20) )) ]; then done_at=$(now_ms); break; fi
      sleep 0.1
    done
    if [ -n "$done_at" ]; then
      ms=$(( done_at - t0 ))
      echo "$c rebuild node=$victim MBps=$(( SEQ_MB * 1000 / (ms > 0 ? ms : 1) )) ms=$ms (removal and the rebuild task's 2 s tick included)" | tee -a "$OUT"
      "$CL" sluice "$leader" residency /ckpt.bin --dir "$dir" 2>/dev/null | grep placement | sed "s/^/$c after /" | tee -a "$OUT"
    else
      echo "$c rebuild node=$victim DID NOT FINISH in 120 s" | tee -a "$OUT"
    fi
  fi
  "$CL" down --dir "$dir" >/dev/null 2>&1
  rm -rf "$dir"
done
rm -f "$WORK/seq.bin" "$WORK/back.bin"
say "raw lines in $OUT"
