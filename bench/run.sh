#!/usr/bin/env bash
# bench/run.sh [--quick]
# Data-path comparison: Sluice vs NFS-Ganesha vs the nfsserve crate's directory-mirror demo, each
# in its own network namespace (loopback only), driven by the same userspace NFSv3 client (fio's
# libnfs engine via shared/peers/fio-nfs.sh, plus bench/nfsbench.c on libnfs for COMMIT and
# metadata), plus the machine's ceilings (loopback TCP with iperf3, memory copy).
# Writes bench/results/<UTC date-time>[-quick].md (and the raw measurements beside it).
# Run as root. See bench/README.md.
#
# Env: SLUICE_BIN=path        use this sluice binary instead of building the workspace
#      SLUICE_REV=text        how the report names that binary's source (e.g. a commit)
#      SLUICE_METADATA=log    run Sluice's metadata through the metadata log ([cluster] metadata)
#      SLUICE_CACHE_MIB=n     Sluice's block cache size ([nvme] cache_mib; 0: off)
#      SLUICE_WRITE_BACK_MIB=n  UNSTABLE writes acknowledged before their device write ([nvme] write_back_mib; 0: off)
#      BENCH_WORK=/var/tmp/sluice-bench   data dirs and state (must be on a real disk, not tmpfs)
#      NFSSERVE_BIN=path      use this nfsserve directory server instead of building bench/nfsserve-dir
#      PEERS=<repo>/../shared/peers   REPS=, JOBS=, SEQ_MB=, RUNTIME=, META_N=, META_P=, LIST_N=,
#      RTT_N=, DS_N=, DS_KIB=, DS_P= override the mode
#      SERVERS="sluice ganesha nfsserve"   a subset, for debugging
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
PEERS=${PEERS:-$(cd "$ROOT/.." && pwd)/shared/peers}
MODE=full
[ "${1:-}" = --quick ] && MODE=quick
if [ $MODE = quick ]; then
  REPS=${REPS:-1}; JOBS=${JOBS:-4}; SEQ_MB=${SEQ_MB:-32}; RUNTIME=${RUNTIME:-4}; META_N=${META_N:-2000}
  LIST_N=${LIST_N:-5000}; DS_N=${DS_N:-2000}
  TCP_T=3; MEM_MB=4096; CAP=${CAP:-60}
else
  # 4 jobs x 1 GiB: a 4 GiB checkpoint; a data set of 20 000 files of 128 KiB (issue 22).
  REPS=${REPS:-3}; JOBS=${JOBS:-4}; SEQ_MB=${SEQ_MB:-1024}; RUNTIME=${RUNTIME:-15}; META_N=${META_N:-10000}
  LIST_N=${LIST_N:-50000}; DS_N=${DS_N:-20000}
  TCP_T=10; MEM_MB=20000; CAP=${CAP:-180}
fi
SERVERS=${SERVERS:-"sluice ganesha nfsserve"}
DS_KIB=${DS_KIB:-128}             # size of a data-set file
DS_P=${DS_P:-4}                  # clients reading the data set
META_P=${META_P:-8}              # clients of the parallel metadata run (processes, one connection each)
RTT_N=${RTT_N:-10000}            # GETATTRs of the round-trip floor
WORK=${BENCH_WORK:-/var/tmp/sluice-bench}
NSP=sbench                       # namespaces: sbench-sluice, sbench-ganesha, sbench-nfsserve, sbench-ceil
STAMP=$(date -u +%Y-%m-%dT%H%M%SZ)
OUTDIR=$HERE/results
NAME=$STAMP$([ $MODE = quick ] && echo -quick || true)
RAW=$OUTDIR/$NAME.jsonl
LOG=$WORK/logs
FIO=$PEERS/fio-nfs.sh
T0=$(date +%s)
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
CLK=$(getconf CLK_TCK)

say() { echo "[bench $(date -u +%H:%M:%S)] $*" >&2; }
die() { say "ERROR: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (network namespaces)"
[ -x "$FIO" ] || die "no $FIO (set PEERS)"
command -v python3 >/dev/null || die "python3 needed for the report"

# ----------------------------------------------------------------------------- setup
case $(stat -f -c %T "$(dirname "$WORK")") in tmpfs|ramfs) die "$WORK is on tmpfs; set BENCH_WORK to a disk";; esac
# Only ever wipe a directory this script made (it holds the marker file).
if [ -e "$WORK" ] && [ ! -e "$WORK/.sluice-bench" ] && [ -n "$(ls -A "$WORK" 2>/dev/null)" ]; then
  die "$WORK exists and was not made by bench/run.sh; choose another BENCH_WORK"
fi
rm -rf "$WORK"; mkdir -p "$WORK/bin" "$LOG" "$OUTDIR"; : >"$WORK/.sluice-bench"
: >"$RAW"

if ! command -v iperf3 >/dev/null; then
  say "installing iperf3 (Debian)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends iperf3 >/dev/null 2>&1 || {
    apt-get update -qq >/dev/null 2>&1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends iperf3 >/dev/null; }
fi
say "fio with the libnfs engine (first call builds it)"
"$FIO" --build-only
FIOBIN=${FIO_NFS_HOME:-$HOME/.cache/fio-nfs}/fio
gcc -O2 -Wall -o "$WORK/bin/nfsbench" "$HERE/nfsbench.c" -lnfs -lpthread || die "building nfsbench (needs libnfs-dev)"
NFSBENCH=$WORK/bin/nfsbench

if [ -n "${SLUICE_BIN:-}" ]; then
  SLUICE=$SLUICE_BIN
else
  say "building sluice (release)"
  (cd "$ROOT" && cargo build --release -q -p nfs-server --bin sluice) || die "sluice build failed"
  SLUICE=${CARGO_TARGET_DIR:-$ROOT/target}/release/sluice
fi
[ -x "$SLUICE" ] || die "no sluice binary at $SLUICE"

# The nfsserve crate (crates.io, BSD-3-Clause) publishes no server binary, so the nfsserve column
# is bench/nfsserve-dir: a small program of ours that serves a directory through the crate, as its
# upstream directory-mirror demo does. NFSSERVE_BIN=path runs another build instead; it is run as
# `$NFSSERVE_BIN <dir> 127.0.0.1:2049`.
case " $SERVERS " in *" nfsserve "*)
  if [ -n "${NFSSERVE_BIN:-}" ]; then
    NFSSERVE=$NFSSERVE_BIN
  else
    say "building the nfsserve peer (bench/nfsserve-dir, release)"
    NFSSERVE_TARGET=${CARGO_TARGET_DIR:-$ROOT/target}/nfsserve-dir
    CARGO_TARGET_DIR=$NFSSERVE_TARGET cargo build --release -q --locked \
      --manifest-path "$HERE/nfsserve-dir/Cargo.toml" || die "building bench/nfsserve-dir failed"
    NFSSERVE=$NFSSERVE_TARGET/release/nfsserve-dir
  fi
  [ -x "$NFSSERVE" ] || die "no nfsserve server at $NFSSERVE"
  NFSSERVE_VER=${NFSSERVE_VER:-nfsserve $(sed -n 's/^nfsserve = "=\(.*\)"/\1/p' "$HERE/nfsserve-dir/Cargo.toml")};;
esac
TBUILD=$(date +%s)

# ----------------------------------------------------------------------------- namespaces
mkns() { ip netns del "$1" 2>/dev/null || true; ip netns add "$1"; ip netns exec "$1" ip link set lo up; }
SPID=
cleanup() {
  set +e
  [ -n "$SPID" ] && kill "$SPID" 2>/dev/null
  NS=$NSP-ganesha STATE=$WORK/ganesha EXPORT_DIR=$WORK/ganesha-export "$PEERS/ganesha.sh" stop >/dev/null 2>&1
  for s in sluice ganesha nfsserve ceil; do ip netns del "$NSP-$s" 2>/dev/null; done
}
trap cleanup EXIT

rec() { echo "$1" >>"$RAW"; }   # one JSON object per line

# ----------------------------------------------------------------------------- ceilings
ceilings() {
  say "ceilings: memcpy, dd, disk (O_DIRECT), loopback TCP"
  local m dd tcp
  m=$("$NFSBENCH" memcpy $MEM_MB)
  rec "{\"kind\":\"ceiling\",\"what\":\"memcpy\",\"MBps\":$(echo "$m" | python3 -c 'import json,sys;print(json.load(sys.stdin)["MBps"])')}"
  # The disk under every server's data, with the workload's shape (JOBS x 1 MiB, O_DIRECT,
  # an fsync at the end of the write): the ceiling for a save and a cold restore.
  local dj=$WORK/disk-ceiling w
  mkdir -p "$WORK/disk"
  # Then 4 KiB random reads and writes at the NFS runs' total depth (JOBS x 32, libaio): the
  # ceiling for the random rows.
  for w in write read randread randwrite; do
    local args=(--rw=$w --bs=1M --ioengine=psync --end_fsync=1)
    case $w in rand*) args=(--rw=$w --bs=4k --ioengine=libaio --iodepth=32 --norandommap --time_based --runtime=$RUNTIME);; esac
    [ $w = read ] && { sync; echo 3 >/proc/sys/vm/drop_caches; }
    "$FIOBIN" --name=disk --directory="$WORK/disk" --direct=1 --numjobs=$JOBS --size=${SEQ_MB}M \
      "${args[@]}" --group_reporting --output-format=json >"$dj.$w.json" 2>"$dj.$w.err" || true
    rec "$(python3 - "$dj.$w.json" $w <<'PY'
import json,sys
w=sys.argv[2]; d="write" if w.endswith("write") else "read"
try:
    x=json.load(open(sys.argv[1]))["jobs"][0][d]; t=x["runtime"]/1000.0
    out={"MBps":x["io_bytes"]/t/1e6,"IOPS":x["total_ios"]/t}
except Exception: out={"MBps":None,"IOPS":None}
print(json.dumps(dict(kind="ceiling",what="disk-"+w,**out)))
PY
)"
  done
  rm -rf "$WORK/disk"
  dd=$(dd if=/dev/zero of=/dev/null bs=1M count=$MEM_MB 2>&1 | tail -1)
  rec "$(echo "$dd" | python3 -c '
import sys,json,re
l=sys.stdin.read(); b=int(l.split()[0]); s=float(re.search(r"copied, ([0-9.]+) s",l).group(1))
print(json.dumps({"kind":"ceiling","what":"dd","MBps":b/s/1e6}))')"
  mkns $NSP-ceil
  ip netns exec $NSP-ceil iperf3 -s -1 >/dev/null 2>&1 &
  sleep 0.5
  tcp=$(ip netns exec $NSP-ceil iperf3 -c 127.0.0.1 -t $TCP_T -J)
  rec "$(echo "$tcp" | python3 -c '
import sys,json
d=json.load(sys.stdin); print(json.dumps({"kind":"ceiling","what":"tcp","MBps":d["end"]["sum_received"]["bits_per_second"]/8/1e6}))')"
  wait || true
  ip netns del $NSP-ceil
}

# ----------------------------------------------------------------------------- servers
# Each start_* sets SPID (the server process measured), URL (libnfs URL of the export) and SLOG.
# start_sluice REP [keep]: with "keep", the data of the last run stays (a restart).
start_sluice() {
  local ns=$NSP-sluice d=$WORK/sluice-data
  if [ "${2:-}" = keep ]; then
    ip netns list | grep -qw "$ns" || mkns $ns
  else
    mkns $ns; rm -rf "$d"; mkdir -p "$d"
  fi
  printf '[[export]]\npath = "/"\n[[export.clients]]\nmatch = "*"\nsquash = "none"\n' >"$WORK/sluice.toml"
  if [ -n "${SLUICE_METADATA:-}" ]; then
    printf '[cluster]\nmetadata = "%s"\n' "$SLUICE_METADATA" >>"$WORK/sluice.toml"
  fi
  if [ -n "${SLUICE_CACHE_MIB:-}${SLUICE_WRITE_BACK_MIB:-}" ]; then
    printf '[nvme]\n' >>"$WORK/sluice.toml"
    [ -z "${SLUICE_CACHE_MIB:-}" ] || printf 'cache_mib = %s\n' "$SLUICE_CACHE_MIB" >>"$WORK/sluice.toml"
    [ -z "${SLUICE_WRITE_BACK_MIB:-}" ] || printf 'write_back_mib = %s\n' "$SLUICE_WRITE_BACK_MIB" >>"$WORK/sluice.toml"
  fi
  SLOG=$LOG/sluice.$1.log
  SLUICE_LOG=${SLUICE_LOG:-info} ip netns exec $ns "$SLUICE" serve --config "$WORK/sluice.toml" \
    --data-dir "$d" --listen 127.0.0.1:2049 --mount-listen 127.0.0.1:20048 --portmap off \
    </dev/null >"$SLOG" 2>&1 &
  SPID=$!
  URL="nfs://127.0.0.1/?version=3&nfsport=2049&mountport=20048"
  waitport $ns 2049
}
start_ganesha() {
  local ns=$NSP-ganesha
  mkns $ns; rm -rf "$WORK/ganesha" "$WORK/ganesha-export"; mkdir -p "$WORK/ganesha"
  NS=$ns STATE=$WORK/ganesha EXPORT_DIR=$WORK/ganesha-export "$PEERS/ganesha.sh" start >&2 || return 1
  SPID=$(cat "$WORK/ganesha/ganesha.pid")
  SLOG=$WORK/ganesha/ganesha.log
  URL="nfs://127.0.0.1$WORK/ganesha-export?version=3&nfsport=2049&mountport=20048"
  waitport $ns 20048
}
start_nfsserve() {
  local ns=$NSP-nfsserve d=$WORK/nfsserve-export
  mkns $ns; rm -rf "$d"; mkdir -p "$d"
  SLOG=$LOG/nfsserve.$1.log
  ip netns exec $ns "$NFSSERVE" "$d" 127.0.0.1:2049 </dev/null >"$SLOG" 2>&1 &
  SPID=$!
  URL="nfs://127.0.0.1/?version=3&nfsport=2049&mountport=2049"
  waitport $ns 2049
}
# cold SERVER REP: empty the caches a re-read could hit: the kernel's page cache (Ganesha and
# nfsserve read through it) and, for Sluice, its own block cache (a restart on the same data;
# it reads with O_DIRECT, so the page cache holds none of its data).
cold() {
  sync; echo 3 >/proc/sys/vm/drop_caches
  if [ "$1" = sluice ] && [ -n "$SPID" ]; then
    kill "$SPID" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$SPID" 2>/dev/null || true
    wait "$SPID" 2>/dev/null || true
    start_sluice "$2" keep || say "sluice did not come back after a restart (log: $SLOG)"
  fi
}
stop_server() {
  local s=$1
  if [ "$s" = ganesha ]; then
    NS=$NSP-ganesha STATE=$WORK/ganesha EXPORT_DIR=$WORK/ganesha-export "$PEERS/ganesha.sh" stop >/dev/null 2>&1 || true
    cp "$WORK/ganesha/ganesha.log" "$LOG/ganesha.$2.log" 2>/dev/null || true
  elif [ -n "$SPID" ]; then
    kill "$SPID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$SPID" 2>/dev/null || true
    wait "$SPID" 2>/dev/null || true
  fi
  SPID=
  ip netns del "$NSP-$s" 2>/dev/null || true
  rm -rf "$WORK/sluice-data" "$WORK/ganesha-export" "$WORK/nfsserve-export"
}
waitport() {
  for _ in $(seq 100); do
    ip netns exec "$1" bash -c "exec 3<>/dev/tcp/127.0.0.1/$2" 2>/dev/null && return 0
    kill -0 "$SPID" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# /proc accounting of the server process: CPU ticks (utime+stime) and peak RSS (VmHWM, reset
# before each workload by writing 5 to clear_refs).
cpu_ticks() { awk '{print $14+$15}' "/proc/$SPID/stat" 2>/dev/null || echo 0; }
hwm_reset() { echo 5 >"/proc/$SPID/clear_refs" 2>/dev/null || true; }
hwm_kb() { awk '/^VmHWM/{print $2}' "/proc/$SPID/status" 2>/dev/null || echo 0; }

# fio_watch PID: fio's libnfs engine sometimes never returns from nfs_umount() when a job ends
# (seen with Sluice: the client got a correct reply to its MOUNT NULL call and then sent nothing
# more; see README). The statistics are already complete then. So: once some of fio's job
# processes have exited (fewer than JOBS alive, 2 s after the start), the others get 15 s, then are killed (fio's main process still prints
# the JSON). Absolute cap: CAP seconds. Prints how many job processes were killed.
fio_watch() {
  # $1 is the subshell that runs fio (for its `times`); fio's main process is its child, and the
  # job processes are the main process's children.
  local p=$1 t=0 max=0 since=-1 n k main killed=0
  while kill -0 "$p" 2>/dev/null; do
    main=$(ps -o pid= --ppid "$p" | head -1 | tr -d ' ')
    n=0; [ -n "$main" ] && n=$(ps -o pid= --ppid "$main" | wc -l)
    [ "$n" -gt "$max" ] && max=$n
    [ "$since" -lt 0 ] && [ "$n" -gt 0 ] && [ $t -ge 4 ] && { [ "$n" -lt "$max" ] || [ "$n" -lt "$JOBS" ]; } && since=$t
    if [ -n "$main" ] && { { [ "$since" -ge 0 ] && [ $((t - since)) -ge 30 ]; } || [ $t -ge $((CAP * 2)) ]; }; then
      for k in $(ps -o pid= --ppid "$main"); do kill -KILL "$k" 2>/dev/null && killed=$((killed + 1)); done
      since=$t
    fi
    sleep 0.5; t=$((t + 1))
  done
  echo $killed
}

# run_fio SERVER REP WORKLOAD FIO-ARGS... : one fio run (JSON), plus COMMIT for writes.
run_fio() {
  local s=$1 r=$2 w=$3; shift 3
  local ns=$NSP-$s c0 c1 commit='{"commit_s":0,"errors":0}' rc=0 fjson=$LOG/$s.$r.$w.json ferr=$LOG/$s.$r.$w.err
  hwm_reset; c0=$(cpu_ticks)
  # The subshell's `times` gives the CPU of fio and its job processes: the client's cost.
  ( ip netns exec $ns "$FIOBIN" --ioengine=nfs --nfs_url="$URL" --name=ckpt$r --numjobs=$JOBS \
      --size=${SEQ_MB}M --group_reporting --output-format=json "$@" >"$fjson" 2>"$ferr" && st=0 || st=$?
    times >"$fjson.times"; exit $st ) &
  local fp=$! killed
  killed=$(fio_watch $fp)
  wait $fp || rc=$?
  case $w in seqwrite|randwrite)
    local files=() j
    for j in $(seq 0 $((JOBS - 1))); do files+=("ckpt$r.$j.0"); done
    commit=$(ip netns exec $ns "$NFSBENCH" commit "$URL" "${files[@]}" 2>>"$ferr") || true
    [ -n "$commit" ] || commit='{"commit_s":0,"errors":-1}';;
  esac
  c1=$(cpu_ticks)
  rec "$(python3 - "$fjson" "$ferr" <<PY
import json,sys
try: d=json.load(open(sys.argv[1])); j=d["jobs"][0]
except Exception as e: j=None
err=open(sys.argv[2]).read().splitlines()
cancel=sum(1 for l in err if "Failed NFS operation(code:-14): (null)" in l)
other=[l for l in err if l.strip() and "Failed NFS operation(code:-14): (null)" not in l]
def cpu_of_times(path):
    # bash times: the shell's user/sys, then its children's ("0m1.234s 0m0.567s").
    try:
        line = open(path).read().splitlines()[1]
        return sum(int(t.split("m")[0]) * 60 + float(t.split("m")[1].rstrip("s")) for t in line.split())
    except Exception:
        return None
out={"kind":"run","server":"$s","rep":$r,"workload":"$w","fio_rc":$rc,"cpu_s":($c1-$c0)/$CLK,
     "client_cpu_s":cpu_of_times("$fjson.times"),
     "hwm_kb":int("$(hwm_kb)" or 0),"commit":json.loads('''$commit'''),"tail_cancelled":cancel,"jobs_killed":$killed,"stderr":other[:5]}
if j:
    dd="write" if "$w".endswith("write") else "read"
    x=j[dd]; out.update(bytes=x["io_bytes"],ops=x["total_ios"],runtime_s=x["runtime"]/1000.0,fio_error=j["error"])
print(json.dumps(out))
PY
)"
}

# run_nfsbench SERVER REP KIND ARGS...: one nfsbench run, recorded with the server's CPU and RSS.
run_nfsbench() {
  local s=$1 r=$2 kind=$3 c0 c1 m rc=0; shift 3
  hwm_reset; c0=$(cpu_ticks)
  m=$(ip netns exec $NSP-$s "$NFSBENCH" "$@" 2>"$LOG/$s.$r.$kind.err") || rc=$?
  c1=$(cpu_ticks)
  [ -n "$m" ] || m='{"n":0}'
  rec "{\"kind\":\"$kind\",\"server\":\"$s\",\"rep\":$r,\"rc\":$rc,\"cpu_s\":$(python3 -c "print(($c1-$c0)/$CLK)"),\"hwm_kb\":$(hwm_kb),\"res\":$m}"
}

bench_server() {
  local s=$1 r=$2
  say "rep $r: $s"
  if ! start_$s "$r"; then
    rec "{\"kind\":\"fail\",\"server\":\"$s\",\"rep\":$r,\"what\":\"start\"}"
    say "$s failed to start (log: ${SLOG:-?})"; stop_server "$s" "$r"; return 0
  fi
  rec "{\"kind\":\"start\",\"server\":\"$s\",\"rep\":$r,\"pid\":$SPID}"
  local w
  for w in seqwrite seqread seqread_cold randread randwrite rtt meta metap list dsfill dsread1 dsread2; do
    if ! kill -0 "$SPID" 2>/dev/null; then
      rec "{\"kind\":\"fail\",\"server\":\"$s\",\"rep\":$r,\"what\":\"died before $w\"}"; break
    fi
    case $w in
      seqwrite)  run_fio "$s" "$r" $w --rw=write --bs=1M --iodepth=1 ;;
      seqread)   run_fio "$s" "$r" $w --rw=read --bs=1M --iodepth=4 ;;
      seqread_cold) cold "$s" "$r"
                 run_fio "$s" "$r" $w --rw=read --bs=1M --iodepth=4 ;;
      randread)  run_fio "$s" "$r" $w --rw=randread --bs=4k --iodepth=32 --norandommap --time_based --runtime=$RUNTIME ;;
      randwrite) run_fio "$s" "$r" $w --rw=randwrite --bs=4k --iodepth=32 --norandommap --time_based --runtime=$RUNTIME ;;
      rtt)       run_nfsbench "$s" "$r" rtt rtt "$URL" "$RTT_N" ;;
      meta)      run_nfsbench "$s" "$r" meta meta "$URL" "$META_N" 1 ;;
      metap)     run_nfsbench "$s" "$r" metap meta "$URL" $((META_N / META_P)) "$META_P" ;;
      list)      # One fill per server (it is the slow part: 50 000 synchronous creates), listed
                 # three times; the later repetitions skip it to keep a full run within 30 min.
                 [ "$r" = 1 ] && run_nfsbench "$s" "$r" list list "$URL" "$LIST_N" ;;
      # A training data set: written once, then read in two epochs, the first one cold.
      dsfill)    run_nfsbench "$s" "$r" dsfill dataset "$URL" fill "$DS_N" "$DS_KIB" "$DS_P" ;;
      dsread1)   cold "$s" "$r"
                 run_nfsbench "$s" "$r" dsread1 dataset "$URL" read "$DS_N" "$DS_KIB" "$DS_P" ;;
      dsread2)   run_nfsbench "$s" "$r" dsread2 dataset "$URL" read "$DS_N" "$DS_KIB" "$DS_P" ;;
    esac
  done
  kill -0 "$SPID" 2>/dev/null || rec "{\"kind\":\"fail\",\"server\":\"$s\",\"rep\":$r,\"what\":\"died\"}"
  stop_server "$s" "$r"
}

# ----------------------------------------------------------------------------- run
say "mode=$MODE reps=$REPS jobs=$JOBS seq=${SEQ_MB}MiB/job runtime=${RUNTIME}s meta=$META_N (x1, /$META_P x$META_P) list=$LIST_N servers: $SERVERS"
ceilings
for r in $(seq 1 "$REPS"); do
  for s in $SERVERS; do bench_server "$s" "$r"; done
done
T1=$(date +%s)

python3 "$HERE/report.py" "$RAW" "$OUTDIR/$NAME.md" \
  --mode "$MODE" --command "bench/run.sh$([ $MODE = quick ] && echo ' --quick' || true)" \
  --reps "$REPS" --jobs "$JOBS" --seq-mb "$SEQ_MB" --runtime "$RUNTIME" --meta-n "$META_N" --meta-p "$META_P" --list-n "$LIST_N" --rtt-n "$RTT_N" \
  --ds-n "$DS_N" --ds-kib "$DS_KIB" --ds-p "$DS_P" \
  --sluice "$SLUICE" --sluice-rev "${SLUICE_REV:-$([ -n "${SLUICE_BIN:-}" ] && echo 'given by SLUICE_BIN' || git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?')}" \
  --nfsserve "${NFSSERVE_VER:-nfsserve}" --ganesha "$(dpkg-query -W -f '${Version}' nfs-ganesha 2>/dev/null || echo '?')" \
  --fio "$("$FIOBIN" --version)" --libnfs "$(dpkg-query -W -f '${Version}' libnfs-dev 2>/dev/null || echo '?')" \
  --load-start "$LOAD0" --build-s $((TBUILD - T0)) --bench-s $((T1 - TBUILD)) --logs "$LOG"
say "done in $((T1 - T0)) s (builds $((TBUILD - T0)) s): $OUTDIR/$NAME.md"
