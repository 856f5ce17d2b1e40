#!/usr/bin/env python3
"""bench/report.py RAW.jsonl OUT.md [options]: turns bench/run.sh's raw measurements into the
Markdown report (medians over repetitions, ratios, server CPU per GiB, peak RSS, problems)."""
import argparse
import json
import os
import platform
import statistics
import subprocess
import time

ap = argparse.ArgumentParser()
ap.add_argument("raw")
ap.add_argument("out")
for a in ("mode", "command", "reps", "jobs", "seq-mb", "runtime", "meta-n", "meta-p", "list-n", "rtt-n",
          "ds-n", "ds-kib", "ds-p",
          "sluice", "sluice-rev",
          "nfsserve", "ganesha", "fio", "libnfs", "load-start", "build-s", "bench-s", "logs"):
    ap.add_argument("--" + a, default="?")
o = ap.parse_args()

rows = [json.loads(l) for l in open(o.raw) if l.strip()]
SERVERS = ["sluice", "ganesha", "nfsserve"]
NAMES = {"sluice": "Sluice", "ganesha": "Ganesha", "nfsserve": "nfsserve"}
ceil = {r["what"]: r["MBps"] for r in rows if r["kind"] == "ceiling" and not r["what"].startswith("disk-rand")}
ceil_iops = {r["what"]: r.get("IOPS") for r in rows if r["kind"] == "ceiling" and r["what"].startswith("disk-rand")}
GiB = 1 << 30


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def runs(server, workload):
    return [r for r in rows if r["kind"] == "run" and r["server"] == server and r["workload"] == workload]


def metas(server, kind="meta"):
    return [r for r in rows if r["kind"] == kind and r["server"] == server]


def nfsbench_rate(r, seconds_key, err_key="errors"):
    res = r["res"]
    if not res.get("n") or res.get(err_key) or r.get("rc") or not res.get(seconds_key):
        return None
    return res["n"] / res[seconds_key]


def ok_run(r):
    return r.get("bytes") and r.get("runtime_s") and r.get("fio_error", 1) == 0


def eff(r, unit):
    """Throughput of one run; write workloads include the COMMIT that follows them."""
    if not ok_run(r):
        return None
    t = r["runtime_s"] + (r["commit"].get("commit_s") or 0 if r["workload"].endswith("write") else 0)
    return r["bytes"] / t / 1e6 if unit == "MB/s" else r["ops"] / t


def meta_rate(r, phase):
    res = r["res"]
    if not res.get("n") or res.get(phase + "_err"):
        return None
    return res["n"] / res[phase + "_s"] if res[phase + "_s"] > 0 else None


WL = [
    ("seqwrite", "MB/s", f"Checkpoint save: 1 MiB seq. write + COMMIT, {o.jobs} jobs x QD1"),
    ("seqread", "MB/s", f"Restore: 1 MiB seq. read, {o.jobs} jobs x QD4"),
    ("seqread_cold", "MB/s", f"Restore, cold: the same after dropping the page cache (and restarting Sluice)"),
    ("randread", "IOPS", f"4 KiB random read, {o.jobs} jobs x QD32"),
    ("randwrite", "IOPS", f"4 KiB random write + COMMIT, {o.jobs} jobs x QD32"),
]
table = {}  # (row, server) -> value
for w, unit, label in WL:
    for s in SERVERS:
        table[(label, s)] = med([eff(r, unit) for r in runs(s, w)])
META_LABEL = {"meta": "1 client", "metap": f"{o.meta_p} clients"}
meta_labels = []
for kind in ("meta", "metap"):
    for phase in ("create", "stat", "remove"):
        label = f"Metadata: {phase} ({o.meta_n} files, {META_LABEL[kind]}, sync)"
        meta_labels.append((label, "ops/s"))
        for s in SERVERS:
            table[(label, s)] = med([meta_rate(r, phase) for r in metas(s, kind)])
RTT_LABEL = "GETATTR round trip, 1 client, sync (the floor of every metadata call)"
LIST_LABEL = f"`ls -l` of a {o.list_n}-entry directory (READDIRPLUS, 1 client)"
for s in SERVERS:
    table[(RTT_LABEL, s)] = med([nfsbench_rate(r, "seconds") for r in metas(s, "rtt")])
    table[(LIST_LABEL, s)] = med([nfsbench_rate(r, "list_mean_s") for r in metas(s, "list")])
DS = [
    ("dsfill", f"Data set: write {o.ds_n} files of {o.ds_kib} KiB (+ COMMIT each), {o.ds_p} clients"),
    ("dsread1", f"Data set: epoch 1, read every file, {o.ds_p} clients, cold (caches dropped, Sluice restarted)"),
    ("dsread2", f"Data set: epoch 2, the same again (warm)"),
]
for kind, label in DS:
    for s in SERVERS:
        table[(label, s)] = med([r["res"].get("MBps") for r in metas(s, kind)
                                 if not r.get("rc") and r["res"].get("MBps")])
labels = [(l, u) for _, u, l in WL] + [(l, "MB/s") for _, l in DS] + meta_labels + [(RTT_LABEL, "ops/s"), (LIST_LABEL, "entries/s")]


def fmt(v, unit=""):
    if v is None:
        return "FAIL"
    if unit == "ratio":
        return f"{v:.2f}"
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"


def ratio(a, b):
    return a / b if a is not None and b else None


L = []
title = "quick" if o.mode == "quick" else "full"
uname = platform.uname()
cpu = subprocess.run("lscpu | sed -n 's/^Model name: *//p'", shell=True, capture_output=True, text=True).stdout.strip()
load = open("/proc/loadavg").read().split()[:3]
L.append(f"# Data path comparison ({title} run), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
L.append(f"Command: `{o.command}` (mode {o.mode}: {o.reps} repetition(s), medians shown; {o.jobs} fio jobs; "
         f"{o.seq_mb} MiB per job for the sequential files; {o.runtime} s per random-I/O run; {o.meta_n} files).\n")
L.append(f"Machine: {os.cpu_count()} CPUs ({cpu}), {round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / GiB)} GiB RAM, "
         f"kernel {uname.release}. Load average (1, 5, 15 min) at the start: {o.load_start}; at the end: {' '.join(load)}. "
         f"Every server and its client ran in its own network namespace over loopback; data on the real disk.\n")
L.append(f"Versions: sluice {o.sluice_rev} ({o.sluice}); NFS-Ganesha {o.ganesha} (FSAL VFS); {o.nfsserve} "
         f"(bench/nfsserve-dir); {o.fio} with the libnfs {o.libnfs} engine.\n")
L.append(f"Time: builds {o.build_s} s, benchmark {o.bench_s} s.\n")
L.append("## Throughput (median)\n")
L.append("| Workload | Unit | Sluice | Ganesha | nfsserve | Sluice/Ganesha | Sluice/nfsserve | TCP ceiling | Sluice/TCP | Disk ceiling | Sluice/disk |")
L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
# The disk ceiling of each fio workload: the same shape, straight to the disk.
DISK_OF = {"seqwrite": "disk-write", "seqread": "disk-read", "seqread_cold": "disk-read",
           "randread": "disk-randread", "randwrite": "disk-randwrite"}
disk_of_label = {label: DISK_OF[w] for w, _, label in WL}
disk_of_label.update({DS[0][1]: "disk-write", DS[1][1]: "disk-read", DS[2][1]: "disk-read"})
for label, unit in labels:
    v = {s: table[(label, s)] for s in SERVERS}
    c = ceil.get("tcp") if unit == "MB/s" else None
    key = disk_of_label.get(label)
    d = ceil.get(key) if unit == "MB/s" else ceil_iops.get(key) if unit == "IOPS" else None
    L.append(f"| {label} | {unit} | {fmt(v['sluice'])} | {fmt(v['ganesha'])} | {fmt(v['nfsserve'])} | "
             f"{fmt(ratio(v['sluice'], v['ganesha']), 'ratio')} | {fmt(ratio(v['sluice'], v['nfsserve']), 'ratio')} | "
             f"{fmt(c) if c else '-'} | {fmt(ratio(v['sluice'], c), 'ratio') if c else '-'} | "
             f"{fmt(d) if d else '-'} | {fmt(ratio(v['sluice'], d), 'ratio') if d else '-'} |")
L.append("")
L.append("Ceilings: " + ", ".join(f"{k} {fmt(v)} MB/s" for k, v in sorted(ceil.items()))
         + ", " + ", ".join(f"{k} {fmt(v)} IOPS" for k, v in sorted(ceil_iops.items()))
         + f" (tcp: iperf3, 1 stream, loopback in a namespace; memcpy: 64 MiB buffers; dd: /dev/zero to /dev/null, 1 MiB blocks; "
         f"disk: fio, {o.jobs} jobs x 1 MiB psync O_DIRECT on the disk that holds the servers' data, the write with an fsync at its end, "
         f"the read after dropping the page cache; the random ones 4 KiB libaio O_DIRECT, {o.jobs} jobs x QD32).\n")
L.append("## Where the CPU goes (median cores busy while the workload ran)\n")
L.append("Server: its process's CPU time; client: fio and its job processes (bash `times`), each divided by the "
         "run's duration. Client and server share the machine's " + str(os.cpu_count()) + " CPUs.\n")
L.append("| Workload | " + " | ".join(f"{NAMES[s]} server | {NAMES[s]} client" for s in SERVERS) + " |")
L.append("|---|" + "---:|" * (2 * len(SERVERS)))
for w, unit, label in WL:
    cells = []
    for s in SERVERS:
        rs = [r for r in runs(s, w) if ok_run(r)]
        sv = med([r["cpu_s"] / r["runtime_s"] for r in rs])
        cv = med([r["client_cpu_s"] / r["runtime_s"] for r in rs if r.get("client_cpu_s") is not None])
        cells += [f"{sv:.2f}" if sv is not None else "-", f"{cv:.2f}" if cv is not None else "-"]
    L.append(f"| {label} | " + " | ".join(cells) + " |")
L.append("")

L.append("## Server cost (median)\n")
L.append("Server process CPU (utime+stime from /proc/PID/stat, before/after each workload) per GiB moved "
         "(per 1000 operations for metadata), and peak RSS (VmHWM, reset before each workload).\n")
L.append("| Workload | Sluice CPU | Ganesha CPU | nfsserve CPU | Sluice RSS MiB | Ganesha RSS MiB | nfsserve RSS MiB |")
L.append("|---|---:|---:|---:|---:|---:|---:|")
for w, unit, label in WL:
    cpu_ = {s: med([r["cpu_s"] / (r["bytes"] / GiB) for r in runs(s, w) if ok_run(r)]) for s in SERVERS}
    rss = {s: med([r["hwm_kb"] / 1024 for r in runs(s, w) if r.get("hwm_kb")]) for s in SERVERS}
    L.append(f"| {label} | " + " | ".join(f"{cpu_[s]:.2f} s/GiB" if cpu_[s] is not None else "FAIL" for s in SERVERS)
             + " | " + " | ".join(f"{rss[s]:.0f}" if rss[s] is not None else "-" for s in SERVERS) + " |")
for kind, label in DS:
    cpu_ = {s: med([r["cpu_s"] / (r["res"]["bytes"] / GiB) for r in metas(s, kind)
                    if not r.get("rc") and r["res"].get("bytes")]) for s in SERVERS}
    rss = {s: med([r["hwm_kb"] / 1024 for r in metas(s, kind) if r.get("hwm_kb")]) for s in SERVERS}
    L.append(f"| {label} | " + " | ".join(f"{cpu_[s]:.2f} s/GiB" if cpu_[s] is not None else "FAIL" for s in SERVERS)
             + " | " + " | ".join(f"{rss[s]:.0f}" if rss[s] is not None else "-" for s in SERVERS) + " |")
for kind in ("meta", "metap"):
    cpu_ = {s: med([r["cpu_s"] / (3 * r["res"]["n"]) * 1000 for r in metas(s, kind) if r["res"].get("n")]) for s in SERVERS}
    rss = {s: med([r["hwm_kb"] / 1024 for r in metas(s, kind) if r.get("hwm_kb")]) for s in SERVERS}
    L.append(f"| Metadata create+stat+remove, {META_LABEL[kind]} | "
             + " | ".join(f"{cpu_[s]:.3f} s/1000 ops" if cpu_[s] is not None else "FAIL" for s in SERVERS)
             + " | " + " | ".join(f"{rss[s]:.0f}" if rss[s] is not None else "-" for s in SERVERS) + " |")
L.append("")

L.append("## COMMIT after the writes (median seconds, all files)\n")
L.append("| Workload | " + " | ".join(NAMES[s] for s in SERVERS) + " |")
L.append("|---|---:|---:|---:|")
for w in ("seqwrite", "randwrite"):
    cells = []
    for s in SERVERS:
        rs = runs(s, w)
        errs = sum(1 for r in rs if r["commit"].get("errors"))
        v = med([r["commit"].get("commit_s") for r in rs if not r["commit"].get("errors")])
        cells.append(("n/a (COMMIT refused)" if errs else "-") if v is None else f"{v:.3f}")
    L.append(f"| {w} | " + " | ".join(cells) + " |")
L.append("")

L.append("## Problems seen\n")
probs = []
artifacts = []
notes = set()
for r in rows:
    if r["kind"] == "fail":
        probs.append(f"- {NAMES[r['server']]}, rep {r['rep']}: {r['what']}")
    elif r["kind"] == "run":
        art = [l for l in (r.get("stderr") or []) if "got signal=" in l]
        unavail = any("Procedure not available" in l for l in (r.get("stderr") or []))
        real = [l for l in (r.get("stderr") or []) if "got signal=" not in l and "Procedure not available" not in l]
        if unavail:
            notes.add(f"- {NAMES[r['server']]} answers COMMIT with PROC_UNAVAIL (\"Procedure not available\"); "
                      "its WRITEs are synced one by one instead, so its write rates include no COMMIT.")
        if art:
            artifacts.append(f"- {NAMES[r['server']]}, rep {r['rep']}, {r['workload']}: {' / '.join(art)}"
                             + (f" ({r['jobs_killed']} job process(es) killed by the watchdog)" if r.get("jobs_killed") else ""))
        if r.get("fio_error") or real or (r.get("fio_rc") and not art):
            probs.append(f"- {NAMES[r['server']]}, rep {r['rep']}, {r['workload']}: fio exit {r.get('fio_rc')}, "
                         f"job error {r.get('fio_error')}; stderr: {' / '.join(real)[:300]}")
        if r["commit"].get("errors") and not unavail:
            probs.append(f"- {NAMES[r['server']]}, rep {r['rep']}, {r['workload']}: COMMIT failed "
                         f"(see {o.logs}/{r['server']}.{r['rep']}.{r['workload']}.err)")
    elif r["kind"] in ("meta", "metap", "rtt", "list", "dsfill", "dsread1", "dsread2"):
        res = r["res"]
        if r.get("rc") or not res.get("n"):
            probs.append(f"- {NAMES[r['server']]}, rep {r['rep']}, {r['kind']}: exit {r.get('rc')}, {json.dumps(res)} "
                         f"(see {o.logs}/{r['server']}.{r['rep']}.{r['kind']}.err)")
seen = set()
probs = [p for p in probs if not (p in seen or seen.add(p))]
L.extend(probs or ["- none"])
if notes:
    L.append("")
    L.append("Notes:\n")
    L.extend(sorted(notes))
L.append("")
L.append("Client-side artifacts of fio's libnfs engine (not server errors: a job process that crashes in "
         "its teardown (signal 11) or hangs in nfs_umount() and is killed by the watchdog (signal 9) after "
         "its I/O completed; fio still reports its I/O):\n")
L.extend(artifacts or ["- none"])
cancel = {s: sum(r.get("tail_cancelled", 0) for r in rows if r.get("server") == s and r["kind"] == "run") for s in SERVERS}
L.append("")
L.append("fio's libnfs engine cancels the requests still in flight when a job ends (it prints "
         "`Failed NFS operation(code:-14): (null)` for each; they are not counted as done). "
         "Counted over all runs: " + ", ".join(f"{NAMES[s]} {cancel[s]}" for s in SERVERS) + ".\n")
# Sluice's own log: every WARN or ERROR line, per repetition.
import glob
import re
ansi = re.compile(r"\x1b\[[0-9;]*m")
L.append("Sluice server log (WARN/ERROR lines):\n")
found = False
for f in sorted(glob.glob(os.path.join(o.logs, "sluice.*.log"))):
    bad = [ansi.sub("", l).strip() for l in open(f, errors="replace") if re.search(r"\b(WARN|ERROR)\b", ansi.sub("", l))]
    if bad:
        found = True
        L.append(f"- `{os.path.basename(f)}`: {len(bad)} line(s); first: " + " / ".join(f"`{b[:240]}`" for b in bad[:3]))
if not found:
    L.append("- none")
L.append("")
L.append(f"Raw measurements: `{os.path.basename(o.raw)}` beside this file; fio JSON and server logs in `{o.logs}` "
         "(not kept in the repository).\n")
open(o.out, "w").write("\n".join(L))
print("\n".join(L))
