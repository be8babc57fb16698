"""daemonlib - helpers for the usviewd end-to-end tests.

make_us(path, ...)       a small synthetic ultrasound instance (pydicom)
Notify                   a NOTIFY_SOCKET the daemon reports READY=1 etc. to
Usviewd                  usviewd with a YAML configuration in a temp dir:
                         start() waits for READY=1, kill(), stop(), results(),
                         metrics(), healthz(), wait_idle()
parse_prometheus(text)   a strict parser of the text exposition format 0.0.4
view_code(label)         the 99USVIEW code value of one of the 11 paper views
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import usvtest  # noqa: E402

import numpy as np  # noqa: E402
import pydicom  # noqa: E402
import yaml  # noqa: E402
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, generate_uid  # noqa: E402

US_IMAGE = "1.2.840.10008.5.1.4.1.1.6.1"
SR_COMPREHENSIVE = "1.2.840.10008.5.1.4.1.1.88.33"


def make_us(path, sop_uid=None, study_uid=None, series_uid=None, rows=64, cols=80, seed=0,
            manufacturer="ACME", patient="Test^Phantom"):
    """Writes a grey US Image Storage instance; returns its SOP Instance UID."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:rows, 0:cols]
    img = (128 + 60 * np.sin(xx / (3 + seed % 7)) * np.cos(yy / (4 + seed % 5))
           + rng.normal(0, 10, (rows, cols))).clip(0, 255).astype(np.uint8)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = US_IMAGE
    meta.MediaStorageSOPInstanceUID = sop_uid or generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = US_IMAGE
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.Modality = "US"
    ds.Manufacturer = manufacturer
    ds.PatientName = patient
    ds.PatientID = "USV-TEST-1"
    ds.StudyDate = "20261125"
    ds.StudyTime = "120000"
    ds.AccessionNumber = "A1"
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = seed + 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = img.tobytes()
    ds.is_little_endian = True
    ds.is_implicit_VR = False
    pydicom.dcmwrite(path, ds, write_like_original=False)
    return ds.SOPInstanceUID


_VIEW = {
    "liver_left_long": "LIVER-L-LONG", "liver_left_trans": "LIVER-L-TRANS",
    "liver_right_long": "LIVER-R-LONG", "liver_right_trans": "LIVER-R-TRANS",
    "spleen": "SPLEEN", "pancreas": "PANCREAS",
    "kidney_left_long": "KIDNEY-L-LONG", "kidney_left_trans": "KIDNEY-L-TRANS",
    "kidney_right_long": "KIDNEY-R-LONG", "kidney_right_trans": "KIDNEY-R-TRANS",
    "gallbladder": "GALLBLADDER",
}


def view_code(label):
    return _VIEW.get(label, label)


class Notify:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.setblocking(False)
        self.messages = []

    def poll(self):
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return
            self.messages.append((time.monotonic(), data.decode("utf-8", "replace")))

    def wait(self, needle, timeout=20.0, since=0, proc=None):
        """First message (index >= since) containing needle; None on timeout."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.poll()
            for i in range(since, len(self.messages)):
                if needle in self.messages[i][1].split("\n"):
                    return i
            if proc is not None and proc.poll() is not None:
                return None
            time.sleep(0.02)
        return None


class Usviewd:
    def __init__(self, tmp, model, destinations=(), extra=None, name="usviewd", http=True):
        self.tmp = tmp
        self.name = name
        self.port = usvtest.free_port()
        self.http_port = usvtest.free_port()
        self.spool = os.path.join(tmp, name + "-spool")
        self.cfg_path = os.path.join(tmp, name + ".yaml")
        self.log_path = os.path.join(tmp, name + ".log")
        self.cfg = {
            "listen": {"bind": "127.0.0.1", "port": self.port, "ae_title": "USVIEW",
                       "acse_timeout": 5, "dimse_timeout": 20},
            "spool": {"dir": self.spool, "min_free_mb": 0},
            "model": {"path": model, "workers": 2, "batch_size": 8, "batch_wait_ms": 20},
            "destinations": list(destinations),
            "http": {"bind": "127.0.0.1", "port": self.http_port, "enabled": http},
            "log": {"level": "info", "journald": False},
        }
        for k, v in (extra or {}).items():
            if isinstance(v, dict):
                self.cfg.setdefault(k, {}).update(v)
            else:
                self.cfg[k] = v
        self.write_config()
        self.proc = None
        self.notify = None
        self.starts = 0

    def write_config(self, text=None):
        with open(self.cfg_path, "w") as f:
            f.write(text if text is not None else yaml.safe_dump(self.cfg, sort_keys=False))

    def start(self, timeout=30, env_extra=None):
        self.starts += 1
        sock = os.path.join(self.tmp, "%s-notify-%d.sock" % (self.name, self.starts))
        self.notify = Notify(sock)
        env = dict(os.environ)
        env["NOTIFY_SOCKET"] = sock
        env.pop("JOURNAL_STREAM", None)
        env.update(env_extra or {})
        with open(self.log_path, "ab") as out:
            out.write(b"---- start %d\n" % self.starts)
            out.flush()
            p = subprocess.Popen([os.environ["USVIEWD"], "-c", self.cfg_path], stdout=out,
                                 stderr=subprocess.STDOUT, env=env, start_new_session=True)
        usvtest._procs.append(p)
        self.proc = p
        i = self.notify.wait("READY=1", timeout, proc=self.proc)
        if i is None:
            raise RuntimeError("usviewd did not become ready:\n" + self.log()[-4000:])
        return self

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig=signal.SIGKILL):
        if self.alive():
            os.kill(self.proc.pid, sig)
            self.proc.wait(timeout=30)

    def stop(self, timeout=30):
        if self.alive():
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                return self.proc.wait(timeout=timeout)
            except Exception:
                self.kill()
                return None
        return self.proc.returncode if self.proc else None

    def http(self, path):
        url = "http://127.0.0.1:%d%s" % (self.http_port, path)
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return r.status, r.headers.get("Content-Type", ""), r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.headers.get("Content-Type", ""), e.read().decode()

    def results(self):
        path = os.path.join(self.spool, "results.jsonl")
        if not os.path.exists(path):
            return []
        out = []
        with open(path) as f:
            for line in f:
                if line.endswith("\n"):
                    out.append(json.loads(line))
        return out

    def files(self, *parts, suffix=".dcm"):
        d = os.path.join(self.spool, *parts)
        if not os.path.isdir(d):
            return []
        return sorted(os.path.join(d, n) for n in os.listdir(d) if n.endswith(suffix))

    def outbox_count(self):
        d = os.path.join(self.spool, "outbox")
        n = 0
        if os.path.isdir(d):
            for dest in os.listdir(d):
                n += len(self.files("outbox", dest))
        return n

    def wait_idle(self, timeout=60, outbox=True):
        """incoming/, active/ (and outboxes) empty."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if (not self.files("incoming") and not self.files("active")
                    and (not outbox or self.outbox_count() == 0)):
                return True
            time.sleep(0.1)
        return False


_METRIC_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
_SAMPLE = re.compile(r"^(%s)(\{(?:%s)(?:,%s)*\})? (\S+)( -?\d+)?$" % (_METRIC_NAME, _LABEL, _LABEL))
_VALUE = re.compile(r"^(?:[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)|[+-]Inf|NaN)$")


def parse_prometheus(text):
    """Parses the text format 0.0.4 strictly: every sample belongs to the
    family declared by the last # TYPE, families are not repeated, values
    are floats, histograms have increasing cumulative buckets ending in
    +Inf equal to _count. Returns ({family: type}, [(name, labels, value)])
    or raises ValueError naming the line."""
    types, samples, current, seen = {}, [], None, set()
    if not text.endswith("\n"):
        raise ValueError("exposition does not end with a newline")
    for n, line in enumerate(text.split("\n")[:-1], 1):
        if line.startswith("# HELP "):
            parts = line.split(" ", 3)
            if len(parts) < 4 or not re.match("^%s$" % _METRIC_NAME, parts[2]):
                raise ValueError("line %d: bad HELP" % n)
            continue
        if line.startswith("# TYPE "):
            parts = line.split(" ")
            if len(parts) != 4 or parts[3] not in ("counter", "gauge", "histogram",
                                                   "summary", "untyped"):
                raise ValueError("line %d: bad TYPE %r" % (n, line))
            if parts[2] in seen:
                raise ValueError("line %d: family %s declared twice" % (n, parts[2]))
            seen.add(parts[2])
            types[parts[2]] = parts[3]
            current = parts[2]
            continue
        if line.startswith("#") or line == "":
            if line == "":
                raise ValueError("line %d: empty line" % n)
            continue
        m = _SAMPLE.match(line)
        if not m or not _VALUE.match(m.group(3)):
            raise ValueError("line %d: bad sample %r" % (n, line))
        name, value = m.group(1), float(m.group(3))
        labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"',
                                 m.group(2) or ""))
        base = name
        if current and types[current] == "histogram":
            for suf in ("_bucket", "_sum", "_count"):
                if name == current + suf:
                    base = current
        if base != current:
            raise ValueError("line %d: sample %s outside its family (%s)" % (n, name, current))
        if types[current] == "counter" and value < 0:
            raise ValueError("line %d: negative counter" % n)
        samples.append((name, labels, value))
    for fam, t in types.items():
        if t != "histogram":
            continue
        buckets = [(s[1].get("le"), s[2]) for s in samples if s[0] == fam + "_bucket"]
        if not buckets or buckets[-1][0] != "+Inf":
            raise ValueError("%s: no +Inf bucket" % fam)
        les = [float(b[0]) for b in buckets]
        vals = [b[1] for b in buckets]
        if les != sorted(les) or vals != sorted(vals):
            raise ValueError("%s: buckets not cumulative" % fam)
        count = [s[2] for s in samples if s[0] == fam + "_count"]
        if count != [vals[-1]]:
            raise ValueError("%s: _count %s != +Inf bucket %s" % (fam, count, vals[-1]))
        if not [s for s in samples if s[0] == fam + "_sum"]:
            raise ValueError("%s: no _sum" % fam)
    return types, samples


def sample(samples, name, **labels):
    for n, lab, v in samples:
        if n == name and all(lab.get(k) == val for k, val in labels.items()):
            return v
    return None
