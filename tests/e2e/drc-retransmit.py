#!/usr/bin/env python3
"""A REMOVE retransmitted to another node gets its first try's answer (ha/PROTOCOL.md 7.6).

An NFSv3 client by hand, so that it can retransmit a call byte for byte, from the same source
port, after the target moved (what the Linux client does when a reply is lost):

  drc-retransmit.py first SERVER NAME STATE   MNT /, CREATE NAME, REMOVE NAME (must be OK);
                                              the REMOVE call and source port go to STATE;
                                              the connection is reset (no TIME_WAIT)
  drc-retransmit.py again SERVER STATE        from the same port, the same REMOVE (same xid,
                                              same bytes) must get OK, not NOENT; a new REMOVE
                                              of the name (another xid) must get NOENT

Exits 0 when every answer is as expected, 1 (with the reason on stderr) otherwise. Every
socket call is bounded by a 20 s timeout.
"""
import json
import os
import socket
import struct
import sys

NFS_PROG, MOUNT_PROG = 100003, 100005
NFS_PORT, MOUNT_PORT = 2049, 20048
SRC_PORT = 870  # privileged, as a kernel client's
OK, NOENT = 0, 2


def fail(why):
    print(f"drc-retransmit: FAIL: {why}", file=sys.stderr)
    sys.exit(1)


def opaque(b):
    return struct.pack(">I", len(b)) + b + b"\0" * (-len(b) % 4)


def call_msg(xid, prog, vers, proc, args):
    cred = struct.pack(">I", 0) + opaque(b"drc-test") + struct.pack(">III", 0, 0, 0)
    head = struct.pack(">IIIIII", xid, 0, 2, prog, vers, proc)
    head += struct.pack(">I", 1) + opaque(cred) + struct.pack(">II", 0, 0)
    body = head + args
    return struct.pack(">I", 0x80000000 | len(body)) + body


def connect(server, port, src_port=0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.settimeout(20)
    s.bind(("0.0.0.0", src_port))
    s.connect((server, port))
    return s


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        got = s.recv(n - len(buf))
        if not got:
            fail("the server closed the connection")
        buf += got
    return buf


def rpc(s, msg, xid):
    """Sends msg; returns the accepted reply's results (after the verifier)."""
    s.sendall(msg)
    while True:
        (mark,) = struct.unpack(">I", recv_exact(s, 4))
        body = recv_exact(s, mark & 0x7FFFFFFF)
        rxid, mtype, stat = struct.unpack(">III", body[:12])
        if rxid != xid:
            continue  # a late answer to something else
        if mtype != 1 or stat != 0:
            fail(f"xid {xid}: the call was denied")
        vlen = struct.unpack(">I", body[16:20])[0]
        at = 20 + vlen + (-vlen % 4)
        (accept,) = struct.unpack(">I", body[at:at + 4])
        if accept != 0:
            fail(f"xid {xid}: accept_stat {accept}")
        return body[at + 4:]


def reset(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def remove_msg(xid, fh, name):
    return call_msg(xid, NFS_PROG, 3, 12, opaque(fh) + opaque(name))


def first(server, name, state):
    xid = int.from_bytes(os.urandom(3), "big") << 4
    m = connect(server, MOUNT_PORT)
    res = rpc(m, call_msg(xid, MOUNT_PROG, 3, 1, opaque(b"/")), xid)
    m.close()
    if struct.unpack(">I", res[:4])[0] != 0:
        fail("MNT / refused")
    flen = struct.unpack(">I", res[4:8])[0]
    fh = res[8:8 + flen]
    s = connect(server, NFS_PORT, SRC_PORT)
    # CREATE UNCHECKED, mode 0644.
    sattr = struct.pack(">IIIIIII", 1, 0o644, 0, 0, 0, 0, 0)
    args = opaque(fh) + opaque(name.encode()) + struct.pack(">I", 0) + sattr
    status = struct.unpack(">I", rpc(s, call_msg(xid + 1, NFS_PROG, 3, 8, args), xid + 1)[:4])[0]
    if status != OK:
        fail(f"CREATE {name}: status {status}")
    msg = remove_msg(xid + 2, fh, name.encode())
    status = struct.unpack(">I", rpc(s, msg, xid + 2)[:4])[0]
    if status != OK:
        fail(f"REMOVE {name}: status {status}")
    reset(s)
    with open(state, "w") as f:
        json.dump({"xid": xid + 2, "msg": msg.hex(), "fh": fh.hex(), "name": name}, f)
    print(f"drc-retransmit: created and removed {name} (REMOVE xid {xid + 2:#x})")


def again(server, state):
    with open(state) as f:
        st = json.load(f)
    s = connect(server, NFS_PORT, SRC_PORT)
    status = struct.unpack(">I", rpc(s, bytes.fromhex(st["msg"]), st["xid"])[:4])[0]
    if status != OK:
        fail(f"the retransmitted REMOVE got status {status}, not OK (it ran twice)")
    xid = st["xid"] + 1
    fresh = remove_msg(xid, bytes.fromhex(st["fh"]), st["name"].encode())
    status = struct.unpack(">I", rpc(s, fresh, xid)[:4])[0]
    if status != NOENT:
        fail(f"a new REMOVE of the removed name got status {status}, not NOENT")
    reset(s)
    print("drc-retransmit: the retransmitted REMOVE got OK from the new owner; a new one NOENT")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "first":
        first(sys.argv[2], sys.argv[3], sys.argv[4])
    elif len(sys.argv) == 4 and sys.argv[1] == "again":
        again(sys.argv[2], sys.argv[3])
    else:
        fail(__doc__)
