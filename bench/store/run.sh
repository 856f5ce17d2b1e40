#!/usr/bin/env bash
# bench/store/run.sh [--quick] [--size MIB] [--seconds N] [--qd N] [--stores "nvme local"]
#                    [--engine auto|uring|threads] [--device PATH]...
# Store-level data path against the disk's ceiling: fio (io_uring, O_DIRECT) and then
# backend/examples/store_bench, on the same file system with the same sizes and queue depth:
#   seqwrite 1 MiB (+ one fsync/COMMIT at the end, timed), seqread 1 MiB,
#   randread 4 KiB for N s, randwrite 4 KiB for N s (+ one fsync/COMMIT at the end, timed).
# Caches are dropped before every phase (sync; echo 3 > /proc/sys/vm/drop_caches), so run as root.
# Prints a table with the ratio store/fio per workload, then the raw JSON lines.
# Defaults: 4096 MiB, 15 s, qd 32; --quick: 1024 MiB, 5 s. See bench/STORE.md.
#
# Env: SCRATCH=/work/bench-scratch/store   where the files go (a real disk, not tmpfs; wiped)
#      CARGO_TARGET_DIR=/work/target-bench  FIO=/usr/bin/fio
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SIZE_MB=4096; SECONDS_=15; QD=32; STORES="nvme local"; ENGINE=auto; DEVICES=()
while [ $# -gt 0 ]; do
  case $1 in
    --quick) SIZE_MB=1024; SECONDS_=5 ;;
    --size) SIZE_MB=$2; shift ;;
    --seconds) SECONDS_=$2; shift ;;
    --qd) QD=$2; shift ;;
    --stores) STORES=$2; shift ;;
    --engine) ENGINE=$2; shift ;;
    --device) DEVICES+=(--device "$2"); shift ;;
    *) echo "usage: $0 [--quick] [--size MIB] [--seconds N] [--qd N] [--stores LIST] [--engine E] [--device PATH]..." >&2; exit 2 ;;
  esac
  shift
done
SCRATCH=${SCRATCH:-/work/bench-scratch/store}
FIO=${FIO:-/usr/bin/fio}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-bench}
BIN=$CARGO_TARGET_DIR/release/examples/store_bench

say() { echo "[store-bench $(date -u +%H:%M:%S)] $*" >&2; }
die() { say "ERROR: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (drop_caches)"
[ -x "$FIO" ] || die "no fio at $FIO (apt-get install fio)"
command -v python3 >/dev/null || die "python3 needed for the table"
case $(stat -f -c %T "$(dirname "$SCRATCH")") in tmpfs|ramfs) die "$SCRATCH is on tmpfs; set SCRATCH";; esac
# Only ever wipe a directory this script made (it holds the marker file).
if [ -e "$SCRATCH" ] && [ ! -e "$SCRATCH/.store-bench" ] && [ -n "$(ls -A "$SCRATCH" 2>/dev/null)" ]; then
  die "$SCRATCH exists and was not made by this script; set SCRATCH"
fi
rm -rf "$SCRATCH"; mkdir -p "$SCRATCH"; : >"$SCRATCH/.store-bench"
trap 'rm -rf "$SCRATCH"' EXIT
NEED_MB=$((SIZE_MB * 2 + 1024))
AVAIL_MB=$(df -Pm "$SCRATCH" | awk 'NR==2 {print $4}')
[ "$AVAIL_MB" -ge "$NEED_MB" ] || die "$SCRATCH has $AVAIL_MB MiB free, needs $NEED_MB"

drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }
# CPU seconds all processes spent busy (user+nice+system+irq+softirq+steal), and our children's.
cpu_busy() { awk -v hz="$(getconf CLK_TCK)" '/^cpu / {print ($2+$3+$4+$7+$8+$9)/hz}' /proc/stat; }
cpu_ours() { awk -v hz="$(getconf CLK_TCK)" '{print ($16+$17)/hz}' "/proc/$$/stat"; }
# The load average counts our own threads blocked on the disk, so it rises during every run;
# the CPU time other processes used during the run says more about interference.
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg); BUSY0=$(cpu_busy); OURS0=$(cpu_ours); T0=$(date +%s)
say "load before: $LOAD0; $(nproc) CPUs; $SIZE_MB MiB, ${SECONDS_} s, qd $QD; scratch $SCRATCH ($(stat -f -c %T "$SCRATCH") on $(df -P "$SCRATCH" | awk 'NR==2 {print $1}'))"

say "building store_bench (release)"
(cd "$ROOT" && cargo build --release --example store_bench -p backend) >&2

RAW=$SCRATCH/raw.jsonl
: >"$RAW"
# fio_job NAME ARGS...: one fio job on the shared file, its JSON reduced to one line.
fio_job() {
  local name=$1; shift
  drop_caches
  "$FIO" --name="$name" --filename="$SCRATCH/fio.dat" --ioengine=io_uring --direct=1 \
    --iodepth="$QD" --size="${SIZE_MB}M" --numjobs=1 --output-format=json "$@" >"$SCRATCH/fio-$name.json"
  python3 - "$name" "$SCRATCH/fio-$name.json" >>"$RAW" <<'EOF'
import json, sys
name, path = sys.argv[1], sys.argv[2]
job = json.load(open(path))["jobs"][0]
d = job["write" if "write" in name else "read"]
secs = d["runtime"] / 1000.0  # ms; covers end_fsync, which fio runs inside the timed I/O loop
print(json.dumps({"tool": "fio", "phase": name, "bytes": d["io_bytes"], "secs": secs,
                  "mbps": d["io_bytes"] / secs / 1e6, "iops": d["total_ios"] / secs}))
EOF
}

say "fio: seqwrite 1M"
rm -f "$SCRATCH/fio.dat"
fio_job seqwrite --rw=write --bs=1M --end_fsync=1
say "fio: seqread 1M"
fio_job seqread --rw=read --bs=1M
say "fio: randread 4k, ${SECONDS_} s"
fio_job randread --rw=randread --bs=4k --norandommap --time_based --runtime="$SECONDS_"
say "fio: randwrite 4k, ${SECONDS_} s (+ end_fsync)"
fio_job randwrite --rw=randwrite --bs=4k --norandommap --time_based --runtime="$SECONDS_" --end_fsync=1
rm -f "$SCRATCH/fio.dat"

for store in $STORES; do
  say "store_bench: $store"
  args=(--store "$store" --dir "$SCRATCH/$store" --size "${SIZE_MB}M" --qd "$QD" --seconds "$SECONDS_" --drop-caches)
  [ "$store" = nvme ] && args+=(--engine "$ENGINE" "${DEVICES[@]}")
  "$BIN" "${args[@]}" | tee "$SCRATCH/store-$store.txt" >&2
  grep '^{' "$SCRATCH/store-$store.txt" >>"$RAW"
  rm -rf "${SCRATCH:?}/$store"
done
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)
OTHERS=$(awk -v b0="$BUSY0" -v b1="$(cpu_busy)" -v o0="$OURS0" -v o1="$(cpu_ours)" -v t="$(( $(date +%s) - T0 ))" \
  'BEGIN {x = (b1 - b0) - (o1 - o0); if (x < 0) x = 0; printf "%.0f CPU-s in %d s (%.2f CPUs)", x, t, x / (t > 0 ? t : 1)}')
say "load after: $LOAD1; other processes used $OTHERS"

python3 - "$RAW" "$SIZE_MB" "$SECONDS_" "$QD" "$LOAD0" "$LOAD1" "$OTHERS" <<'EOF'
import json, sys
raw, size, secs, qd, load0, load1, others = sys.argv[1:]
fio, stores = {}, []
for line in open(raw):
    r = json.loads(line)
    if r.get("tool") == "fio":
        fio[r["phase"]] = r
    else:
        stores.append(r)
phases = [("seqwrite", "1M"), ("seqread", "1M"), ("randread", "4k"), ("randwrite", "4k")]
print(f"\n{size} MiB file, qd {qd}, random phases {secs} s; load before {load0}, after {load1}; "
      f"other processes used {others}")
head = f"{'workload':<10} {'fio MB/s':>9} {'fio IOPS':>9}"
for s in stores:
    head += f" | {s['label'][:16]:>16} {'IOPS':>8} {'/fio':>6}"
print(head)
for name, bs in phases:
    f = fio[name]
    row = f"{name + ' ' + bs:<10} {f['mbps']:>9.1f} {f['iops']:>9.0f}"
    for s in stores:
        p = s["phases"][name]
        row += f" | {p['mbps']:>16.1f} {p['iops']:>8.0f} {p['mbps'] / f['mbps']:>6.2f}"
    print(row)
for s in stores:
    if s["meta"]:
        print(f"{s['label']} metadata: " + ", ".join(f"{k} {v:.0f}" for k, v in s["meta"].items()))
print()
for line in open(raw):
    print(line, end="")
EOF
