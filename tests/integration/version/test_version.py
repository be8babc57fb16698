"""One version, from CMake.

The version is project(usview VERSION x.y.z) in the root CMakeLists.txt and
nowhere else. Checked: the build's CMakeCache.txt and the generated
usv/version.h carry it, no C/C++ source spells it as a string literal,
`usview --version`, `usview version` and `usviewd --version` print it, and
usviewd writes it into Software Versions (0018,1020) of the SR and of the
tagged copy's Contributing Equipment item for a received instance (read from the outbox of a
destination that is down, so nothing needs to receive them).

usage: test_version.py MAKE_MODEL
"""

import os
import re
import subprocess
import sys
import time

import daemonlib
import usvtest
from daemonlib import Usviewd

import pydicom

ck = usvtest.Check("version_single_source")
src = os.environ["USV_SOURCE_DIR"]
bld = os.environ["USV_BINARY_DIR"]

with open(os.path.join(src, "CMakeLists.txt")) as f:
    m = re.search(r"project\(\s*usview\s+VERSION\s+([0-9]+\.[0-9]+\.[0-9]+)", f.read())
ck(m is not None, "no project(usview VERSION ...) in the root CMakeLists.txt")
version = m.group(1) if m else "?"
print("project version", version)

with open(os.path.join(bld, "CMakeCache.txt")) as f:
    m = re.search(r"^CMAKE_PROJECT_VERSION:STATIC=(.*)$", f.read(), re.M)
ck(m is not None and m.group(1) == version,
   "CMakeCache.txt: CMAKE_PROJECT_VERSION %s" % (m.group(1) if m else None))
with open(os.path.join(bld, "common", "include", "usv", "version.h")) as f:
    m = re.search(r'^#define USV_VERSION_STRING "([^"]*)"$', f.read(), re.M)
ck(m is not None and m.group(1) == version,
   "generated version.h: %s" % (m.group(1) if m else None))

# no second copy in the sources
literal = '"%s"' % version
for top in ("common", "nn", "image", "dicom", "config", "daemon", "cli", "tests"):
    for dirpath, _, names in os.walk(os.path.join(src, top)):
        for n in names:
            if n.endswith((".c", ".cpp", ".h")):
                p = os.path.join(dirpath, n)
                with open(p, encoding="utf-8", errors="replace") as f:
                    ck(literal not in f.read(), "%s spells the version %s" % (p, literal))

for argv, want in (([os.environ["USVIEW"], "--version"], "usview " + version),
                   ([os.environ["USVIEW"], "version"], "usview " + version),
                   ([os.environ["USVIEWD"], "--version"], "usviewd " + version)):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    ck(r.returncode == 0 and r.stdout.strip() == want,
       "%s: rc %d, %r (want %r)" % (" ".join(argv[1:]), r.returncode, r.stdout, want))

# what usviewd writes
tmp = usvtest.tempdir("usv-version-")
model = os.path.join(tmp, "tiny.model")
subprocess.run([sys.argv[1], model, "5"], check=True)
down = usvtest.free_port()
d = Usviewd(tmp, model, destinations=[
    {"name": "down", "ae_title": "DOWN", "host": "127.0.0.1", "port": down,
     "send": ["sr", "tagged"], "backoff_initial_s": 600, "backoff_max_s": 600,
     "max_attempts": 100}], http=False)
d.start()
p = os.path.join(tmp, "in.dcm")
daemonlib.make_us(p, seed=3)
r = subprocess.run(["storescu", "-aec", "USVIEW", "127.0.0.1", str(d.port), p],
                   capture_output=True, text=True, timeout=60)
ck(r.returncode == 0, "storescu: %s" % r.stderr)
end = time.monotonic() + 30
while time.monotonic() < end and len(d.files("outbox", "down")) < 2:
    time.sleep(0.1)
outs = d.files("outbox", "down")
ck(len(outs) == 2, "outbox/down holds %d objects (want an SR and a tagged copy)" % len(outs))

def software_versions(item):
    e = item.get((0x0018, 0x1020))
    v = e.value if e is not None else None
    return list(v) if isinstance(v, pydicom.multival.MultiValue) else v


kinds = set()
for path in outs:
    ds = pydicom.dcmread(path)
    if ds.Modality == "SR":
        kinds.add("sr")
        got = software_versions(ds)
    else:
        # a tagged copy keeps the modality's equipment; usview is the last
        # Contributing Equipment item
        kinds.add("tagged")
        ck(software_versions(ds) is None, "tagged copy: the source's Software Versions changed")
        eq = ds.get("ContributingEquipmentSequence")
        got = software_versions(eq[-1]) if eq else None
    ck(got == version or got == [version],
       "%s: Software Versions %r, want %r" % (os.path.basename(path), got, version))
ck(kinds == {"sr", "tagged"}, "objects written: %s" % sorted(kinds))
ck(d.stop() == 0, "usviewd did not stop cleanly:\n" + d.log()[-2000:])
ck.done()
