"""No patient data in usviewd's logs, journal records or results index.

Instances carry distinctive values in the attributes of the PS3.15 Basic
Application Level Confidentiality Profile that identify a patient or the
people and places around the examination: Patient's Name, Patient ID,
Patient's Birth Date, Other Patient IDs and Names, Patient's Address and
Telephone Numbers, Accession Number, Study ID and Description, Referring,
Performing and Operators' names, Institution Name and Address. They are
sent with storescu along every path that logs:
  - a good grey instance (classified, "done"), in UTF-8 too (ISO_IR 192),
    and with a Specific Character Set no one knows (ISO_IR 999);
  - a colour Doppler instance (excluded/);
  - pixel data shorter than Rows x Columns, and a JPEG transfer syntax
    whose fragment is garbage (failed/, the decoder's error message);
  - a CT instance (SOP class refused at negotiation), and Rows above the
    cap (C-STORE answered with a failure status);
  - a C-STORE from a calling AE outside allowed_peers after a SIGHUP
    reload (association rejected), and one more good instance after it;
  - SR results to a destination that refuses every association (sender
    retries, then dead/ with a .reason).
Two daemons run at log.level debug: one writing to stderr, one sending
structured records to journald (replaced, as in test_journald.py, by a
datagram socket of the test at /run/systemd/journal/socket in a private
mount namespace; where that is not permitted only the stderr daemon runs,
with a message). Every stderr line, every journal field (name and value),
every line of results.jsonl, every .reason file of the spool and the
/metrics text are searched for each value, case-insensitively, also with
the '^' separators of person names replaced by spaces, for each name
component of four or more letters, and for the birth date written
YYYY-MM-DD: there must be no hit.

results.jsonl is read by QA dashboards and is allowed to hold the UIDs
(SOP Instance, Series, Study), SOP class, manufacturer and model name,
labels, probabilities and timings - not names, IDs, dates of birth,
accession numbers or addresses. The UIDs are not treated as patient data
here: logs and the index name instances by them by design.

usage: test_privacy.py MAKE_MODEL
"""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings

import usvtest

journal = os.environ.get("USV_PRIVACY_NO_JOURNAL") is None
if len(sys.argv) < 3 or sys.argv[2] != "--inner":
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs tmpfs /run"],
                           capture_output=True)
    if probe.returncode != 0:
        print("NOTE: no private mount namespace here (%s): stderr only"
              % probe.stderr.decode().strip())
        journal = False
    else:
        r = subprocess.run(["unshare", "-m", "sh", "-c",
                            'mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/journal && '
                            'exec "$0" "$@"', sys.executable, os.path.abspath(__file__),
                            sys.argv[1], "--inner"])
        sys.exit(r.returncode)

import numpy as np  # noqa: E402
import pydicom  # noqa: E402
from pydicom.encaps import encapsulate  # noqa: E402
from pydicom.uid import generate_uid  # noqa: E402

import daemonlib  # noqa: E402
from daemonlib import Usviewd  # noqa: E402

PHI = {
    "PatientName": "Quixwell^Zebulon^Marguerite",
    "PatientID": "PID-73914-QX",
    "PatientBirthDate": "19310517",
    "OtherPatientIDs": "OPID-55102-QX",
    "OtherPatientNames": "Yarrowby^Hesper",
    "PatientAddress": "17 Quillfeather Lane, Brackenmoor",
    "PatientTelephoneNumbers": "01632 960417",
    "AccessionNumber": "ACC88213QX",
    "StudyID": "STQX4471",
    "StudyDescription": "Veltmoor abdominal survey",
    "ReferringPhysicianName": "Drumwright^Oswin",
    "PerformingPhysicianName": "Pemberwick^Isolde",
    "OperatorsName": "Thistlecombe^Rook",
    "InstitutionName": "Fallowmere General Infirmary",
    "InstitutionAddress": "Larkspur Road 9, Fallowmere",
}
UTF8_NAME = "Ødegård^Ærenwyn"
BOGUS_NAME = b"Vexholm^Briskmere\xe9"  # in a character set nobody knows


def needles():
    out = set()
    for v in list(PHI.values()) + [UTF8_NAME, BOGUS_NAME[:-1].decode()]:
        out.add(v.lower())
        out.add(v.replace("^", " ").lower())
        for part in v.replace(",", " ").replace("^", " ").split():
            if len(part) >= 4 and not part.isdigit() and part.lower() not in (
                    "lane", "road", "general", "abdominal", "survey"):
                out.add(part.lower())
    b = PHI["PatientBirthDate"]
    out.add("%s-%s-%s" % (b[:4], b[4:6], b[6:]))
    return sorted(out)


def hits(text, where):
    low = text.lower()
    return ["%s: %r" % (where, n) for n in needles() if n in low]


ck = usvtest.Check("daemon_privacy")
tmp = usvtest.tempdir("usv-d-privacy-")
model = os.path.join(tmp, "tiny.model")
subprocess.run([sys.argv[1], model], check=True)


def instance(name, seed, kind="good", patient=PHI["PatientName"]):
    p = os.path.join(tmp, name + ".dcm")
    daemonlib.make_us(p, seed=seed, patient=patient)
    ds = pydicom.dcmread(p)
    for k, v in PHI.items():
        if k != "PatientName":
            setattr(ds, k, v)
    if patient != PHI["PatientName"]:
        ds.SpecificCharacterSet = "ISO_IR 192"
    rows, cols = ds.Rows, ds.Columns
    if kind == "colour":
        rgb = np.zeros((rows, cols, 3), np.uint8)
        rgb[:, : cols // 2, 0] = 255
        rgb[:, cols // 2:, :] = 90
        ds.SamplesPerPixel = 3
        ds.PhotometricInterpretation = "RGB"
        ds.PlanarConfiguration = 0
        ds.PixelData = rgb.tobytes()
    elif kind == "short":
        ds.PixelData = ds.PixelData[:rows * cols // 3 // 2 * 2]
    elif kind == "jpeg":
        ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.50"
        ds.PixelData = encapsulate([b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4])
        ds["PixelData"].is_undefined_length = True
        ds["PixelData"].VR = "OB"
    elif kind == "charset":
        ds.SpecificCharacterSet = "ISO_IR 999"
        ds.add_new(0x00100010, "PN", BOGUS_NAME)
    elif kind == "huge":
        ds.Rows = 65000
    elif kind == "ct":
        ct = "1.2.840.10008.5.1.4.1.1.2"
        ds.SOPClassUID = ct
        ds.file_meta.MediaStorageSOPClassUID = ct
        ds.Modality = "CT"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom on ISO_IR 999
        ds.save_as(p, write_like_original=False)
    return p, ds.SOPInstanceUID


files = {
    "good": instance("good", 1),
    "utf8": instance("utf8", 2, patient=UTF8_NAME),
    "colour": instance("colour", 3, "colour"),
    "short": instance("short", 4, "short"),
    "jpeg": instance("jpeg", 5, "jpeg"),
    "ct": instance("ct", 6, "ct"),
    "huge": instance("huge", 8, "huge"),
    "charset": instance("charset", 9, "charset"),
    "after": instance("after", 7),
}

refuse_port = usvtest.free_port()
refusing = usvtest.Proc(["storescp", "-aet", "REFUSER", "--refuse", str(refuse_port)],
                        log_path=os.path.join(tmp, "refuser.log"))
ck(usvtest.wait_port(refuse_port, 10, refusing.p), "refusing storescp did not start")
dest = [{"name": "refusing", "ae_title": "REFUSER", "host": "127.0.0.1", "port": refuse_port,
         "send": ["sr", "tagged"], "backoff_initial_s": 1, "backoff_max_s": 1,
         "max_attempts": 2}]

# the journal socket is drained all the time: a full queue would block the
# daemon's sd_journal_sendv()
datagrams = []
reading = threading.Event()
if journal:
    js = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    js.bind("/run/systemd/journal/socket")
    js.settimeout(0.2)

    def drain():
        while True:
            try:
                datagrams.append(js.recv(1 << 20))
            except socket.timeout:
                if reading.is_set():
                    return
    reader = threading.Thread(target=drain, daemon=True)
    reader.start()

daemons = [Usviewd(tmp, model, destinations=dest, name="plain",
                   extra={"log": {"journald": False, "level": "debug"}}).start()]
if journal:
    daemons.append(Usviewd(tmp, model, destinations=dest, name="journal",
                           extra={"log": {"journald": True, "level": "debug"}})
                   .start(env_extra={"JOURNAL_STREAM": "8:12345"}))


def store(d, names, aet="MODALITY7", opts=()):
    r = subprocess.run(["storescu", "-aet", aet, "-aec", "USVIEW"] + list(opts)
                       + ["127.0.0.1", str(d.port)] + [files[n][0] for n in names],
                       capture_output=True)
    return r.returncode


def wait_results(d, uids, timeout=20):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = {x["sop_instance_uid"] for x in d.results()}
        if set(uids) <= got:
            return True
        time.sleep(0.1)
    return False


expect = {"good": "done", "utf8": "done", "colour": "excluded", "short": "failed",
          "jpeg": "failed"}
for d in daemons:
    ck(store(d, ["good", "utf8", "charset", "colour", "short"]) == 0, "%s: storescu" % d.name)
    ck(store(d, ["jpeg"], opts=["-xy"]) == 0, "%s: storescu (JPEG)" % d.name)
    store(d, ["ct"])  # refused at negotiation; storescu's status does not matter
    store(d, ["huge"])  # C-STORE answered with a failure status
    ck(wait_results(d, [files[n][1] for n in list(expect) + ["charset"]]),
       "%s: not all processed" % d.name)
    got = {x["sop_instance_uid"]: x["outcome"] for x in d.results()}
    for n, outcome in expect.items():
        ck(got.get(files[n][1]) == outcome, "%s: %s is %s, want %s" %
           (d.name, n, got.get(files[n][1]), outcome))
    for n in ("ct", "huge"):
        ck(files[n][1] not in got, "%s: the %s instance was accepted" % (d.name, n))

# sender: every SR and tagged copy fails twice against the refusing peer
for d in daemons:
    end = time.monotonic() + 30
    while time.monotonic() < end and d.outbox_count():
        time.sleep(0.2)
    ck(d.outbox_count() == 0 and d.files("dead", "refusing"),
       "%s: results not dead after the refusing peer" % d.name)

# reload with allowed_peers: an unknown calling AE is rejected, a known one stores
for d in daemons:
    d.cfg["allowed_peers"] = [{"ae_title": "MODALITY7"}]
    d.write_config()
    os.kill(d.proc.pid, signal.SIGHUP)


def reloaded(d):
    if d.name == "plain":
        return "configuration reloaded" in d.log()
    return any(b"configuration reloaded" in x for x in list(datagrams))


end = time.monotonic() + 20
while time.monotonic() < end and not all(reloaded(d) for d in daemons):
    time.sleep(0.1)
ck(all(reloaded(d) for d in daemons), "reload not logged")
for d in daemons:
    ck(store(d, ["after"], aet="STRANGER") != 0, "%s: STRANGER stored after reload" % d.name)
    ck(store(d, ["after"]) == 0, "%s: storescu after reload" % d.name)
    ck(wait_results(d, [files["after"][1]]), "%s: instance after reload not processed" % d.name)

metrics = {d.name: d.http("/metrics")[2] for d in daemons}
time.sleep(0.5)
for d in daemons:
    ck(d.stop() == 0, "%s: clean stop" % d.name)

found = []
plain = daemons[0]
log = plain.log()
lines = log.count("\n")
print("plain: %d stderr lines" % lines)
ck(lines >= 15, "only %d stderr lines: logging paths not exercised" % lines)
for must in ("excluded", "failed", "refusing", "reload", "STRANGER", "status 0xC"):
    ck(must in log, "stderr log never mentions %r" % must)
for i, line in enumerate(log.split("\n")):
    found += hits(line, "plain stderr line %d" % (i + 1))

records = []
if journal:
    jd = daemons[1]
    reading.set()
    reader.join()
    for data in datagrams:
        rec, i = [], 0
        while i < len(data):
            nl = data.index(b"\n", i)
            line = data[i:nl]
            if b"=" in line:
                k, v = line.split(b"=", 1)
                i = nl + 1
            else:  # binary field: NAME\n<le64 length><value>\n
                n = int.from_bytes(data[nl + 1:nl + 9], "little")
                k, v = line, data[nl + 9:nl + 9 + n]
                i = nl + 9 + n + 1
            rec.append((k.decode("utf-8", "replace"), v.decode("utf-8", "replace")))
        records.append(rec)
    nfields = sum(len(r) for r in records)
    print("journal: %d records, %d fields" % (len(records), nfields))
    ck(len(records) >= 15, "only %d journal records" % len(records))
    msgs = "\n".join(v for r in records for k, v in r if k == "MESSAGE")
    for must in ("excluded", "failed", "refusing", "reload", "STRANGER", "status 0xC"):
        ck(must in msgs, "journal never mentions %r" % must)
    for n, r in enumerate(records):
        for k, v in r:
            found += hits("%s=%s" % (k, v), "journal record %d field %s" % (n, k))
    found += hits(jd.log(), "journal daemon stderr")

for d in daemons:
    with open(os.path.join(d.spool, "results.jsonl"), encoding="utf-8") as f:
        for i, line in enumerate(f):
            found += hits(line, "%s results.jsonl line %d" % (d.name, i + 1))
    nreason = 0
    for root, _, names in os.walk(d.spool):
        for n in names:
            if n.endswith(".reason"):
                nreason += 1
                with open(os.path.join(root, n), encoding="utf-8", errors="replace") as f:
                    found += hits(f.read(), "%s %s" % (d.name, os.path.join(root, n)))
    ck(nreason >= 3, "%s: only %d .reason files" % (d.name, nreason))
    found += hits(metrics[d.name], "%s /metrics" % d.name)

for f in found[:40]:
    print("LEAK: " + f)
ck(not found, "%d hits of patient data" % len(found))
ck.done()
