"""Query/retrieve SCU (usv/dcm_qr.h) against a private Orthanc on loopback.

Data: copies of uncompressed, RLE and big-endian ultrasound files from the
shared set, rewritten with pydicom into five studies with their own UIDs,
dates and modalities, uploaded through Orthanc's REST API:

  A  2024-01-05  US  5 instances (explicit LE RGB, RLE, implicit LE 16 bit,
                     JPEG lossless SV1, multi-frame JPEG baseline)
  B  2024-02-20  US  2 instances (explicit LE, explicit big endian)
  C  2024-02-10  OT  1 instance
  D  2023-12-15  US  1 instance
  L  1999-01-01  US  30 instances (about 0.9 MB each)

F  C-FIND: 20240101-20240331 + US gives exactly A and B with their dates,
   modalities and instance counts; one date gives A; "" + "" gives all five;
   max_results 4 of five is -USV_ERR_LIMIT; a bad date range is -EINVAL.
G  C-GET of A: rc 0, every instance in dir as <SOPInstanceUID>.dcm (the
   callback saw the same paths), SOP Instance UID, transfer syntax and
   Pixel Data bytes equal to the uploaded file's (pydicom; for native and
   RLE data also the decoded pixels), no temporary files left.
M  C-MOVE of B to our temporary SCP (Orthanc knows it as modality USVIEW at
   the listen port): the same checks; a move destination Orthanc does not
   know fails with a status, nothing written.
E  wrong called AE title: -EACCES; closed port: -ECONNREFUSED; a port that
   accepts TCP but never answers: -ETIMEDOUT within the 2 s timeout; an
   unknown study: -ENOENT for C-GET and C-MOVE, err names the peer.
C  the file callback cancels after 2 instances: -ECANCELED for C-GET and
   C-MOVE, exactly 2 files written, Orthanc still answers afterwards.
K  Orthanc killed (SIGKILL) by the callback once 3 instances of L arrived:
   -ECONNRESET, err says how many arrived, and that many files are in dir.

argv[1]: qr_tool.
"""

import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import usvtest  # noqa: E402
from orthanc import Orthanc  # noqa: E402

import numpy as np  # noqa: E402
import pydicom  # noqa: E402

QR_TOOL = sys.argv[1]
US = os.path.join(usvtest.shared_dir(), "data", "dicom", "us")
USV_ERR_DICOM, USV_ERR_LIMIT = -10005, -10003
ck = usvtest.Check("qr_orthanc")
tmp = usvtest.tempdir("usv-qr-")

SOURCES = {
    "A": ["pydicom-data__US1_UNCR.dcm", "pydicom-data__OBXXXX1A_rle.dcm",
          "pydicom-data__gdcm-US-ALOKA-16.dcm", "pydicom-data__JPGLosslessP14SV1_1s_1f_8b.dcm",
          "dicomParser__IM00001.fragmented_no_bot_jpeg_baseline.50.dcm"],
    "B": ["pydicom-data__OBXXXX1A.dcm", "pydicom-data__OBXXXX1A_expb.dcm"],
    "C": ["pydicom-data__US1_UNCR.dcm"],
    "D": ["pydicom-data__OBXXXX1A.dcm"],
    "L": ["pydicom-data__US1_UNCR.dcm"] * 30,
}
DATES = {"A": "20240105", "B": "20240220", "C": "20240210", "D": "20231215", "L": "19990101"}
MODALITY = {"A": "US", "B": "US", "C": "OT", "D": "US", "L": "US"}


def make_studies():
    """name -> (study uid, {sop uid: path of the uploaded copy})"""
    out = {}
    src_dir = os.path.join(tmp, "src")
    os.makedirs(src_dir)
    for name, files in SOURCES.items():
        study = usvtest.derive_uid("qr-test", name)
        series = usvtest.derive_uid("qr-test", name, "series")
        inst = {}
        for i, f in enumerate(files):
            ds = pydicom.dcmread(os.path.join(US, f))
            sop = usvtest.derive_uid("qr-test", name, i)
            ds.StudyInstanceUID = study
            ds.SeriesInstanceUID = series
            ds.SOPInstanceUID = sop
            ds.file_meta.MediaStorageSOPInstanceUID = sop
            ds.PatientID = "QR-" + name  # Orthanc keys studies by patient and study
            ds.PatientName = "QR^" + name
            ds.StudyDate = DATES[name]
            ds.Modality = MODALITY[name]
            ds.InstanceNumber = i + 1
            path = os.path.join(src_dir, "%s-%d.dcm" % (name, i))
            ds.save_as(path, write_like_original=True)
            inst[sop] = path
        out[name] = (study, inst)
    return out


def tool(*args, timeout=120):
    r = subprocess.run([QR_TOOL] + [str(a) for a in args], capture_output=True, text=True,
                       timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError("qr_tool %s: exit %d: %s" % (args[0], r.returncode, r.stderr))
    sys.stderr.write(r.stderr)
    return json.loads(r.stdout)


def peer(o, called=None, port=None, timeout=10):
    return ["127.0.0.1", port or o.dicom_port, called or o.aet, "USVIEW", timeout]


def compare_retrieved(tag, res, expected, outdir):
    """expected: {sop: uploaded path}. Checks files, UIDs, syntax, pixels."""
    ck(res["rc"] == 0, "%s: rc %d: %s" % (tag, res["rc"], res["err"]))
    ck(res["n_ok"] == len(expected), "%s: n_ok %d, want %d" % (tag, res["n_ok"], len(expected)))
    ck(res["n_failed"] == 0, "%s: n_failed %d" % (tag, res["n_failed"]))
    names = sorted(os.listdir(outdir))
    ck(names == sorted(s + ".dcm" for s in expected),
       "%s: files %s, want %s" % (tag, names, sorted(expected)))
    ck(sorted(res["files"]) == sorted(os.path.join(outdir, s + ".dcm") for s in expected),
       "%s: callback paths %s" % (tag, res["files"]))
    for sop, src in expected.items():
        path = os.path.join(outdir, sop + ".dcm")
        if not os.path.exists(path):
            continue
        got, want = pydicom.dcmread(path), pydicom.dcmread(src)
        ck(got.SOPInstanceUID == sop, "%s: %s holds %s" % (tag, path, got.SOPInstanceUID))
        ck(got.file_meta.TransferSyntaxUID == want.file_meta.TransferSyntaxUID,
           "%s: %s transfer syntax %s, uploaded %s" % (tag, sop, got.file_meta.TransferSyntaxUID,
                                                       want.file_meta.TransferSyntaxUID))
        ck(got.PixelData == want.PixelData, "%s: %s Pixel Data bytes differ" % (tag, sop))
        if not want.file_meta.TransferSyntaxUID.is_compressed or \
                want.file_meta.TransferSyntaxUID == pydicom.uid.RLELossless:
            a, b = got.pixel_array, want.pixel_array
            ck(a.shape == b.shape and np.array_equal(a, b), "%s: %s pixels differ" % (tag, sop))


def main():
    studies = make_studies()
    move_port = usvtest.free_port()
    with Orthanc(os.path.join(tmp, "orthanc"),
                 modalities={"usview": ("USVIEW", "127.0.0.1", move_port)}) as o:
        total = 0
        for name, (_, inst) in studies.items():
            for path in inst.values():
                o.upload(path)
                total += 1
        ck(len(o.wait_instances(total, timeout=30)) == total, "Orthanc did not store all")

        # F: C-FIND
        r = tool("find", *peer(o), "20240101-20240331", "US", 100)
        ck(r["rc"] == 0, "find A+B: %s" % r["err"])
        got = {s["uid"]: s for s in r["studies"]}
        want = {studies[n][0]: n for n in ("A", "B")}
        ck(set(got) == set(want), "find 20240101-20240331 US: %s" % sorted(got))
        for uid, n in want.items():
            s = got.get(uid)
            if s:
                ck(s["date"] == DATES[n], "find: %s date %s" % (n, s["date"]))
                ck(s["modalities"] == "US", "find: %s modalities %s" % (n, s["modalities"]))
                ck(s["n_instances"] == len(SOURCES[n]),
                   "find: %s n_instances %d" % (n, s["n_instances"]))
        r = tool("find", *peer(o), "20240105", "", 100)
        ck(r["rc"] == 0 and [s["uid"] for s in r["studies"]] == [studies["A"][0]],
           "find one date: %s" % r)
        r = tool("find", *peer(o), "", "", 100)
        ck(r["rc"] == 0 and {s["uid"] for s in r["studies"]} == {v[0] for v in studies.values()},
           "find all: %s" % r)
        r = tool("find", *peer(o), "", "", 4)
        ck(r["rc"] == USV_ERR_LIMIT and "more than 4" in r["err"], "find over cap: %s" % r)
        r = tool("find", *peer(o), "2024-01-01", "US", 10)
        ck(r["rc"] == -errno.EINVAL, "find bad range: %s" % r)

        # G: C-GET
        gdir = os.path.join(tmp, "get-A")
        os.makedirs(gdir)
        r = tool("get", *peer(o), studies["A"][0], gdir)
        compare_retrieved("C-GET A", r, studies["A"][1], gdir)

        # M: C-MOVE to our temporary SCP
        mdir = os.path.join(tmp, "move-B")
        os.makedirs(mdir)
        r = tool("move", *peer(o), studies["B"][0], "USVIEW", move_port, mdir)
        compare_retrieved("C-MOVE B", r, studies["B"][1], mdir)
        xdir = os.path.join(tmp, "move-unknown-dest")
        os.makedirs(xdir)
        r = tool("move", *peer(o), studies["B"][0], "NOSUCHAE", move_port, xdir)
        ck(r["rc"] == USV_ERR_DICOM and "status 0x" in r["err"],
           "C-MOVE to an unknown destination: %s" % r)
        ck(os.listdir(xdir) == [], "C-MOVE to an unknown destination wrote %s" % os.listdir(xdir))

        # E: refused, unreachable, unknown study
        edir = os.path.join(tmp, "errors")
        os.makedirs(edir)
        r = tool("find", *peer(o, called="WRONGAE"), "", "", 10)
        ck(r["rc"] == -errno.EACCES and "rejected" in r["err"], "wrong called AE: %s" % r)
        r = tool("get", *peer(o, called="WRONGAE"), studies["A"][0], edir)
        ck(r["rc"] == -errno.EACCES, "C-GET wrong called AE: %s" % r)
        closed = usvtest.free_port()
        r = tool("find", *peer(o, port=closed), "", "", 10)
        ck(r["rc"] == -errno.ECONNREFUSED and str(closed) in r["err"], "closed port: %s" % r)
        r = tool("get", *peer(o, port=closed), studies["A"][0], edir)
        ck(r["rc"] == -errno.ECONNREFUSED, "C-GET closed port: %s" % r)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
            silent.bind(("127.0.0.1", 0))
            silent.listen(4)  # accepts TCP (backlog), never answers
            t0 = time.monotonic()
            r = tool("find", *peer(o, port=silent.getsockname()[1], timeout=2), "", "", 10)
            dt = time.monotonic() - t0
        ck(r["rc"] == -errno.ETIMEDOUT and "did not answer" in r["err"],
           "silent peer: %s" % r)
        ck(dt < 8, "silent peer: %.1f s with a 2 s timeout" % dt)
        nosuch = usvtest.derive_uid("qr-test", "no such study")
        r = tool("get", *peer(o), nosuch, edir)
        ck(r["rc"] == -errno.ENOENT and "ORTHANC@127.0.0.1" in r["err"],
           "C-GET unknown study: %s" % r)
        r = tool("move", *peer(o), nosuch, "USVIEW", move_port, edir)
        ck(r["rc"] == -errno.ENOENT, "C-MOVE unknown study: %s" % r)
        ck(os.listdir(edir) == [], "error cases wrote %s" % os.listdir(edir))

        # C: the callback cancels after 2 files (C-GET: association aborted;
        # C-MOVE: the rest refused); Orthanc goes on serving
        for kind in ("get", "move"):
            cdir = os.path.join(tmp, "cancel-" + kind)
            os.makedirs(cdir)
            if kind == "get":
                r = tool("get", *peer(o), studies["L"][0], cdir, 0, 2)
            else:
                r = tool("move", *peer(o), studies["L"][0], "USVIEW", move_port, cdir, 2)
            ck(r["rc"] == -errno.ECANCELED and "cancelled" in r["err"],
               "%s cancelled: %s" % (kind, r))
            ck(r["n_ok"] == 2 and sorted(os.listdir(cdir)) == sorted(
                os.path.basename(f) for f in r["files"]) and len(r["files"]) == 2,
               "%s cancelled: %s, files %s" % (kind, r, os.listdir(cdir)))
        r = tool("find", *peer(o), "20240105", "US", 10)
        ck(r["rc"] == 0 and len(r["studies"]) == 1, "find after cancels: %s" % r)

        # K: Orthanc killed mid-transfer by the callback after 3 files
        kdir = os.path.join(tmp, "get-L")
        os.makedirs(kdir)
        r = tool("get", *peer(o), studies["L"][0], kdir, o.proc.p.pid, 3)
        files = [f for f in os.listdir(kdir) if f.endswith(".dcm")]
        ck(r["rc"] == -errno.ECONNRESET, "C-GET with the peer killed: %s" % r)
        ck(3 <= len(files) < 30, "C-GET with the peer killed: %d files" % len(files))
        ck(r["n_ok"] == len(files), "killed: n_ok %d, %d files" % (r["n_ok"], len(files)))
        ck("after %d instance" % len(files) in r["err"], "killed: err %r" % r["err"])
        ck(all(not f.endswith(".part") for f in os.listdir(kdir)),
           "killed: temporary files left: %s" % os.listdir(kdir))
        for f in files:
            sop = f[:-4]
            ck(sop in studies["L"][1], "killed: unexpected file %s" % f)
    ck.done()


if __name__ == "__main__":
    if not shutil.which("Orthanc") and not os.path.exists("/usr/sbin/Orthanc"):
        print("Orthanc not installed")
        sys.exit(1)
    main()
