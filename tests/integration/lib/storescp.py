"""storescp - DCMTK's storescp as a test peer on loopback.

    from storescp import StoreSCP
    with StoreSCP(outdir, aet="STORESCP") as s:        # accepts everything it can
        s.port                                         # free port it listens on
        s.files()                                      # received files
        s.sop_instance_uids()                          # their SOP Instance UIDs (pydicom)
    StoreSCP(outdir, extra=["--refuse"])               # refuses every association
    StoreSCP(outdir, extra=["--abort-during"])         # aborts while receiving

storescp checks no AE titles and accepts uncompressed transfer syntaxes only
(default). It runs in its own process group and is always killed at exit
(usvtest.Proc); its output goes to <outdir>.log. For failure statuses and a
peer that never answers see statusscp.py.
"""

import glob
import os
import shutil

import usvtest


class StoreSCPError(RuntimeError):
    pass


class StoreSCP:
    def __init__(self, outdir, aet="STORESCP", port=None, extra=None):
        self.outdir = outdir
        self.aet = aet
        self.port = port or usvtest.free_port()
        self.extra = list(extra or [])
        self.proc = None

    def start(self, timeout=10):
        binary = shutil.which("storescp")
        if not binary:
            raise StoreSCPError("storescp not found (apt-get install dcmtk)")
        os.makedirs(self.outdir, exist_ok=True)
        self.proc = usvtest.Proc([binary, "-aet", self.aet, "-od", self.outdir] + self.extra
                                 + [str(self.port)], log_path=self.outdir.rstrip("/") + ".log")
        if not usvtest.wait_port(self.port, timeout, self.proc.p):
            self.stop()
            raise StoreSCPError("storescp did not listen on %d:\n%s" % (self.port,
                                                                        self.proc.log()[-2000:]))
        return self

    def stop(self):
        if self.proc:
            self.proc.stop()

    def log(self):
        return self.proc.log() if self.proc else ""

    def files(self):
        return sorted(f for f in glob.glob(os.path.join(self.outdir, "*")) if os.path.isfile(f))

    def sop_instance_uids(self):
        import pydicom
        return [pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in self.files()]

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False
