#!/usr/bin/env python3
"""harvest_score.py USVIEW ARCH TMP - runs `usview harvest ARCH` on 2 threads
with OCR and prints the numbers of bench/harvest.sh: images/s (wall clock)
and its ratio to the target of 20 img/s, the CPU time per image and the
rate it allows on 2 idle cores, the share of each stage in the summed
per-image times, and the accuracy against ARCH/annotations.csv
(tests/integration/harvest/harvestlib.py)."""
import os
import re
import resource
import subprocess
import sys
import time

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "tests", "integration", "harvest"))
import harvestlib  # noqa: E402

TARGET = 20.0


def main():
    usview, arch, tmp = sys.argv[1:4]
    out, det = os.path.join(tmp, "out.csv"), os.path.join(tmp, "details.csv")
    tr = harvestlib.truth(arch)
    n = len(tr)
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    r = subprocess.run([usview, "harvest", arch, "-o", out, "--details", det, "--threads", "2",
                        "--timings"], capture_output=True, text=True)
    wall = time.monotonic() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    text = r.stdout
    print(text.strip())
    load = os.getloadavg()[0]
    print("images: %d; wall %.1f s: %.1f img/s, %.2f x the target of %.0f img/s "
          "(load average %.1f on %d CPUs)" % (n, wall, n / wall, n / wall / TARGET, TARGET, load,
                                              os.cpu_count()))
    print("CPU: %.1f s, %.1f ms per image: %.1f img/s on 2 idle cores, %.2f x the target"
          % (cpu, 1000 * cpu / n, 2 * n / cpu, 2 * n / cpu / TARGET))
    m = re.search(r"decode (\d+), ocr (\d+), calipers (\d+), mapping (\d+); total (\d+)", text)
    if m:
        dec, ocr, cal, mp, tot = (int(x) for x in m.groups())
        print("stage time per image (ms, summed over the threads): decode %.1f, OCR %.1f, "
              "calipers %.1f, mapping %.2f; total %.1f" % (dec / n, ocr / n, cal / n, mp / n,
                                                          tot / n))
        print("share: decode %.0f%%, OCR %.0f%%, calipers %.0f%%, mapping %.1f%%"
              % (100 * dec / tot, 100 * ocr / tot, 100 * cal / tot, 100 * mp / tot))
    s = harvestlib.score(tr, out, det)
    print(harvestlib.summary_line(s))
    return 0 if r.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
