"""statusscp - a minimal DICOM Storage SCP that answers C-STORE with a chosen status.

For testing how an SCU handles failure statuses (which DCMTK's storescp and
Orthanc cannot be made to send). Written from PS3.8 (upper layer PDUs) and
PS3.7 (command sets, Implicit VR Little Endian); no DICOM library used.

    python3 statusscp.py PORT STATUS [--hang] [--log FILE] [--only UID]...
    STATUS: hex (e.g. A900) answered to every C-STORE; C-ECHO gets 0000.
    --hang: never answer C-STORE (the SCU must time out).
    --only UID: answer STATUS (or hang) only for the SOP instance UID given
    (may be repeated), 0000 for every other instance.

Accepts any called/calling AE and every proposed presentation context with
its first transfer syntax. One association at a time, loopback only. Each
received C-STORE is logged as "STORE <sop instance uid> -> <status> assoc <n>"
(n counts the associations accepted, from 1).
"""

import socket
import struct
import sys
import time


def _items(data):
    i = 0
    while i + 4 <= len(data):
        t, ln = data[i], struct.unpack(">H", data[i + 2:i + 4])[0]
        yield t, data[i + 4:i + 4 + ln]
        i += 4 + ln


def _elem(tag, value):
    g, e = tag >> 16, tag & 0xFFFF
    if len(value) % 2:
        value += b"\0"
    return struct.pack("<HHI", g, e, len(value)) + value


def _parse_command(data):
    out, i = {}, 0
    while i + 8 <= len(data):
        g, e, ln = struct.unpack("<HHI", data[i:i + 8])
        out[(g << 16) | e] = data[i + 8:i + 8 + ln]
        i += 8 + ln
    return out


def _recv_pdu(conn):
    hdr = b""
    while len(hdr) < 6:
        chunk = conn.recv(6 - len(hdr))
        if not chunk:
            return None, None
        hdr += chunk
    ln = struct.unpack(">I", hdr[2:6])[0]
    body = b""
    while len(body) < ln:
        chunk = conn.recv(min(65536, ln - len(body)))
        if not chunk:
            return None, None
        body += chunk
    return hdr[0], body


def _associate_ac(rq):
    called, calling = rq[4:20], rq[20:36]
    body = struct.pack(">HH", 1, 0) + called + calling + b"\0" * 32
    for t, item in _items(rq[68:]):
        if t == 0x10:
            body += struct.pack(">BBH", 0x10, 0, len(item)) + item
        elif t == 0x20:
            pcid = item[0]
            ts = [v for tt, v in _items(item[4:]) if tt == 0x40]
            sub = struct.pack(">BBH", 0x40, 0, len(ts[0])) + ts[0]
            pc = struct.pack(">BBBB", pcid, 0, 0, 0) + sub
            body += struct.pack(">BBH", 0x21, 0, len(pc)) + pc
    uid = b"1.2.826.0.1.3680043.9.7433.1"
    ui = struct.pack(">BBHI", 0x51, 0, 4, 16384) + struct.pack(">BBH", 0x52, 0, len(uid)) + uid
    body += struct.pack(">BBH", 0x50, 0, len(ui)) + ui
    return struct.pack(">BBI", 2, 0, len(body)) + body


def _response(cmd, status, field):
    sop_class = cmd.get(0x00000002, b"")
    msg_id = struct.unpack("<H", cmd.get(0x00000110, b"\1\0")[:2])[0]
    els = _elem(0x00000002, sop_class) + _elem(0x00000100, struct.pack("<H", field))
    els += _elem(0x00000120, struct.pack("<H", msg_id))
    els += _elem(0x00000800, struct.pack("<H", 0x0101))
    els += _elem(0x00000900, struct.pack("<H", status))
    if 0x00001000 in cmd:
        els += _elem(0x00001000, cmd[0x00001000])
    cmdset = _elem(0x00000000, struct.pack("<I", len(els))) + els
    return cmdset


def _pdata(pcid, cmdset):
    pdv = struct.pack(">IBB", len(cmdset) + 2, pcid, 0x03) + cmdset
    return struct.pack(">BBI", 4, 0, len(pdv)) + pdv


def serve(port, status, hang=False, log=None, only=None):
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(4)
    n = 0
    while True:
        conn, _ = srv.accept()
        n += 1
        try:
            _association(conn, status, hang, log, only, n)
        except OSError:
            pass
        finally:
            conn.close()


def _association(conn, status, hang, log, only=None, n=1):
    t, body = _recv_pdu(conn)
    if t != 1:
        return
    conn.sendall(_associate_ac(body))
    cmd_buf, cmd, pcid = b"", None, 1
    while True:
        t, body = _recv_pdu(conn)
        if t is None or t == 7:
            return
        if t == 5:
            conn.sendall(struct.pack(">BBIH", 6, 0, 4, 0) + b"\0\0")
            return
        if t != 4:
            continue
        for _, pdv in ((0, body[i:]) for i in [0]):
            j = 0
            while j + 6 <= len(pdv):
                ln = struct.unpack(">I", pdv[j:j + 4])[0]
                pcid, ctl = pdv[j + 4], pdv[j + 5]
                data = pdv[j + 6:j + 4 + ln]
                j += 4 + ln
                if ctl & 1:
                    cmd_buf += data
                    if ctl & 2:
                        cmd = _parse_command(cmd_buf)
                        cmd_buf = b""
                        field = struct.unpack("<H", cmd[0x00000100][:2])[0]
                        dtype = struct.unpack("<H", cmd.get(0x00000800, b"\1\1")[:2])[0]
                        if field == 0x0030:  # C-ECHO
                            conn.sendall(_pdata(pcid, _response(cmd, 0, 0x8030)))
                            cmd = None
                        elif dtype == 0x0101:
                            cmd = None
                elif ctl & 2 and cmd is not None:
                    uid = cmd.get(0x00001000, b"").rstrip(b"\0").decode()
                    chosen = not only or uid in only
                    st = status if chosen else 0
                    if log:
                        with open(log, "a") as f:
                            f.write("STORE %s -> %04X%s assoc %d\n"
                                    % (uid, st, " (hang)" if hang and chosen else "", n))
                    if hang and chosen:
                        time.sleep(3600)
                    conn.sendall(_pdata(pcid, _response(cmd, st, 0x8001)))
                    cmd = None


if __name__ == "__main__":
    args = sys.argv[1:]
    log = None
    if "--log" in args:
        k = args.index("--log")
        log = args[k + 1]
        del args[k:k + 2]
    only = set()
    while "--only" in args:
        k = args.index("--only")
        only.add(args[k + 1])
        del args[k:k + 2]
    hang = "--hang" in args
    args = [a for a in args if a != "--hang"]
    serve(int(args[0]), int(args[1], 16), hang, log, only)
