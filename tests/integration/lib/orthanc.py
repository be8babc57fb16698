"""orthanc - run a private Orthanc on loopback for a test and talk to its REST API.

    from orthanc import Orthanc
    with Orthanc(workdir, modalities={"usview": ("USVIEW", "127.0.0.1", 11112)}) as o:
        o.dicom_port, o.http_port, o.aet        # where to send, what to call it
        o.wait_instances(2, timeout=20)          # REST /instances until 2 are there
        ids = o.instances()
        tags = o.tags(ids[0])                    # /instances/{id}/tags?simplify
        oid = o.lookup(sop_instance_uid)         # /tools/lookup -> instance id or None
        raw = o.file(oid)                        # the stored DICOM file (bytes)
        o.upload(path)                           # POST /instances

The server gets its own JSON configuration in workdir: loopback only
(RemoteAccessAllowed false; Orthanc binds all interfaces, but refuses
non-local HTTP clients, and DICOM stores are only accepted from the registered
modalities at their registered host), free HTTP and DICOM ports, storage and
index in workdir, no plugins, "DicomCheckCalledAet": true, and
"DicomAlwaysAllowStore": false with "DicomCheckModalityHost": true, so only
the registered modalities (AE + host) may store. The process runs in its own
process group and is always killed at exit (usvtest.Proc). The Orthanc log is
workdir/orthanc.log (o.log()).

Environment: ORTHANC_BIN overrides the binary (default: Orthanc on PATH or
/usr/sbin/Orthanc).
"""

import json
import os
import shutil
import time
import urllib.error
import urllib.request

import usvtest


def orthanc_binary():
    b = os.environ.get("ORTHANC_BIN") or shutil.which("Orthanc")
    if not b and os.path.exists("/usr/sbin/Orthanc"):
        b = "/usr/sbin/Orthanc"
    return b


class OrthancError(RuntimeError):
    pass


class Orthanc:
    def __init__(self, workdir, aet="ORTHANC", modalities=None, extra_config=None):
        self.workdir = workdir
        self.aet = aet
        self.modalities = modalities or {}
        self.extra = extra_config or {}
        self.http_port = usvtest.free_port()
        self.dicom_port = usvtest.free_port()
        while self.dicom_port == self.http_port:
            self.dicom_port = usvtest.free_port()
        self.proc = None
        self.base = "http://127.0.0.1:%d" % self.http_port

    # -- life cycle -------------------------------------------------------
    def config(self):
        cfg = {
            "Name": "usview-test",
            "StorageDirectory": os.path.join(self.workdir, "storage"),
            "IndexDirectory": os.path.join(self.workdir, "index"),
            "StorageCompression": False,
            "HttpServerEnabled": True,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "SslEnabled": False,
            "DicomServerEnabled": True,
            "DicomAet": self.aet,
            "DicomPort": self.dicom_port,
            "DicomCheckCalledAet": True,
            "DicomCheckModalityHost": True,
            "DicomAlwaysAllowStore": False,
            "DicomAlwaysAllowEcho": False,
            "DicomModalities": {
                name: {"AET": m[0], "Host": m[1], "Port": m[2],
                       "AllowStore": True, "AllowEcho": True}
                for name, m in self.modalities.items()
            },
            "DicomThreadsCount": 2,
            "HttpThreadsCount": 4,
            "ConcurrentJobs": 1,
            "SaveJobs": False,
            "StableAge": 1,
            "Plugins": [],
            "UnknownSopClassAccepted": False,
            "DicomScuTimeout": 5,
            "DicomAssociationCloseDelay": 0,
        }
        cfg.update(self.extra)
        return cfg

    def start(self, timeout=30):
        binary = orthanc_binary()
        if not binary:
            raise OrthancError("Orthanc binary not found (apt-get install orthanc)")
        os.makedirs(self.workdir, exist_ok=True)
        path = os.path.join(self.workdir, "orthanc.json")
        with open(path, "w") as f:
            json.dump(self.config(), f, indent=1)
        self.proc = usvtest.Proc([binary, path], log_path=os.path.join(self.workdir,
                                                                       "orthanc.log"),
                                 cwd=self.workdir)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if not self.proc.alive():
                raise OrthancError("Orthanc exited at start:\n" + self.log()[-3000:])
            try:
                self.get("/system")
                if usvtest.wait_port(self.dicom_port, 0.5, self.proc.p):
                    return self
            except (OSError, OrthancError):
                pass
            time.sleep(0.1)
        self.stop()
        raise OrthancError("Orthanc did not answer within %ss:\n%s" % (timeout, self.log()[-3000:]))

    def stop(self):
        if self.proc:
            self.proc.stop()

    def log(self):
        return self.proc.log() if self.proc else ""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    # -- REST -------------------------------------------------------------
    def _req(self, method, path, data=None, ctype=None, raw=False):
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if ctype:
            req.add_header("Content-Type", ctype)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                body = r.read()
        except urllib.error.HTTPError as e:
            raise OrthancError("%s %s: HTTP %d %s" % (method, path, e.code,
                                                      e.read()[:500].decode("utf-8", "replace")))
        except urllib.error.URLError as e:
            raise OrthancError("%s %s: %s" % (method, path, e.reason))
        if raw:
            return body
        return json.loads(body.decode("utf-8")) if body else None

    def get(self, path):
        return self._req("GET", path)

    def post(self, path, data, ctype="application/json"):
        if not isinstance(data, (bytes, bytearray)):
            data = json.dumps(data).encode()
        return self._req("POST", path, data, ctype)

    def instances(self):
        return self.get("/instances")

    def tags(self, oid, simplify=True):
        return self.get("/instances/%s/tags%s" % (oid, "?simplify" if simplify else ""))

    def file(self, oid):
        return self._req("GET", "/instances/%s/file" % oid, raw=True)

    def upload(self, path):
        with open(path, "rb") as f:
            return self.post("/instances", f.read(), "application/dicom")

    def lookup(self, uid):
        """Orthanc id of the instance with this SOP Instance UID, or None."""
        for hit in self.post("/tools/lookup", uid.encode(), "text/plain") or []:
            if hit.get("Type") == "Instance":
                return hit["ID"]
        return None

    def wait_instances(self, n, timeout=20):
        end = time.monotonic() + timeout
        ids = []
        while time.monotonic() < end:
            ids = self.instances()
            if len(ids) >= n:
                return ids
            time.sleep(0.1)
        return ids
