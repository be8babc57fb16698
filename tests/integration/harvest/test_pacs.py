#!/usr/bin/env python3
"""usview harvest --from against a private Orthanc: phantom studies
uploaded, two of them selected by study date, fetched by C-GET (and by
C-MOVE with --move), harvested: the CSV rows (label, study, manufacturer,
source) equal those of harvesting the same files locally. An Orthanc killed
while studies are being fetched gives one clear line per failed step, exit
1, and what arrived is harvested; an Orthanc that is not there at all gives
one line and exit 1."""
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harvestlib  # noqa: E402
import usvtest  # noqa: E402
from orthanc import Orthanc  # noqa: E402

USVIEW = os.environ["USVIEW"]
OPTS = ["--unannotated", "0.1", "--measurements", "0.2", "--attr-labels", "0.3", "--seed", "4"]


def usview(*args):
    return subprocess.run([USVIEW, *args], capture_output=True, text=True)


def rows_of(csv_path):
    return sorted((x["label"], x["group"], x["manufacturer"], x["source"])
                  for x in harvestlib.read_csv(csv_path))


def main():
    ck = usvtest.Check("harvest_pacs")
    tmp = usvtest.tempdir("usv-harvest-pacs-")
    arch = os.path.join(tmp, "arch")
    r = usview("phantom", "--out", arch, "--studies", "6", *OPTS)
    assert r.returncode == 0, r.stderr
    files = sorted(os.path.join(dp, f) for dp, _, fs in os.walk(arch) for f in fs
                   if f.endswith(".dcm"))
    # the studies are dated 2016-01-01 + study index: S00001 and S00002
    local = os.path.join(tmp, "local.csv")
    r = usview("harvest", os.path.join(arch, "S00001"), os.path.join(arch, "S00002"), "-o",
               local)
    ck(r.returncode == 0, "local harvest: " + r.stderr)
    want = rows_of(local)
    ck(len(want) >= 10, "local rows %d" % len(want))

    move_port = usvtest.free_port()
    o = Orthanc(os.path.join(tmp, "orthanc"),
                modalities={"usview": ("USVIEW", "127.0.0.1", move_port)}).start()
    for p in files:
        o.upload(p)
    ck(len(o.wait_instances(len(files), timeout=60)) == len(files), "all stored in Orthanc")
    peer = "%s@127.0.0.1:%d" % (o.aet, o.dicom_port)

    out = os.path.join(tmp, "pacs", "out.csv")
    os.makedirs(os.path.dirname(out))
    r = usview("harvest", "-o", out, "--from", peer, "--study-date", "20160102-20160103",
               "--calling-ae", "USVIEW")
    print(r.stdout.strip())
    print(r.stderr.strip())
    ck(r.returncode == 0, "harvest --from: exit %d" % r.returncode)
    ck("found 2 studies" in r.stderr, "C-FIND by date found 2 studies")
    got = os.listdir(os.path.join(tmp, "pacs", "retrieved"))
    ck(len(got) == 2, "two study folders retrieved: %s" % got)
    ck(rows_of(out) == want, "the PACS CSV equals the local one")
    ck(all(x["path"].startswith("retrieved/") for x in harvestlib.read_csv(out)),
       "paths under the retrieve folder")

    # C-MOVE to our own storage SCP
    out_m = os.path.join(tmp, "move", "out.csv")
    os.makedirs(os.path.dirname(out_m))
    r = usview("harvest", "-o", out_m, "--from", peer, "--study-date", "20160102-20160103",
               "--move", "--move-port", str(move_port))
    ck(r.returncode == 0, "harvest --move: " + r.stderr)
    ck(rows_of(out_m) == want, "the C-MOVE CSV equals the local one")

    # Orthanc killed while the studies come in
    out_k = os.path.join(tmp, "kill", "out.csv")
    rdir = os.path.join(tmp, "kill", "retrieved")
    os.makedirs(os.path.dirname(out_k))
    p = subprocess.Popen([USVIEW, "harvest", "-o", out_k, "--from", peer, "--study-date",
                          "20160101-20160106", "--pacs-timeout", "5"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    end = time.monotonic() + 60
    arrived = 0
    while time.monotonic() < end and p.poll() is None:
        arrived = sum(len([f for f in fs if f.endswith(".dcm")])
                      for _, _, fs in os.walk(rdir)) if os.path.isdir(rdir) else 0
        if arrived:
            break
        time.sleep(0.005)
    os.killpg(o.proc.p.pid, signal.SIGKILL)
    o.proc.p.wait(timeout=10)
    so, se = p.communicate(timeout=120)
    print(so.strip())
    print(se.strip())
    ck(arrived > 0, "some files arrived before the kill")
    ck(p.returncode == 1, "exit 1 after the PACS went away (%s)" % p.returncode)
    bad = [ln for ln in se.splitlines() if ln.startswith("usview harvest: C-")]
    ck(bad and all(peer.split("@")[1] in ln or "study" in ln for ln in bad),
       "one clear line per failed step: %s" % bad)
    kept = sum(len([f for f in fs if f.endswith(".dcm")]) for _, _, fs in os.walk(rdir))
    ck(kept < len(files), "not everything arrived (%d)" % kept)
    ck("%d files" % kept in so, "what arrived was harvested: " + so)

    # no PACS at all
    r = usview("harvest", "-o", out_k, "--from", peer, "--study-date", "20160101")
    ck(r.returncode == 1 and len([ln for ln in r.stderr.splitlines()
                                  if ln.startswith("usview harvest: C-FIND")]) == 1,
       "PACS gone: one line, exit 1: " + r.stderr)
    ck.done()


if __name__ == "__main__":
    main()
