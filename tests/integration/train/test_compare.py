#!/usr/bin/env python3
"""usview compare against independent computations.

- Pearson chi-square with Yates' correction (R's chisq.test rule: each
  |O - E| reduced by min(0.5, min |O - E|)) computed here in Python, p from
  math.erfc(sqrt(x / 2)), on many random 2x2 tables given as --counts;
- values printed by R 4.2 (chisq.test / mcnemar.test) for fixed tables,
  hard-coded;
- two prediction files: the 2x2 table and McNemar's test on the paired
  images, computed here.
"""
import json
import math
import os
import random
import subprocess
import sys
import tempfile

USVIEW = os.environ["USVIEW"]


def run(*args):
    out = subprocess.run([USVIEW, "compare", *args, "--json"], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def yates(a, b, c, d):
    t = [a, b, c, d]
    r = [a + b, c + d]
    k = [a + c, b + d]
    n = a + b + c + d
    e = [r[0] * k[0] / n, r[0] * k[1] / n, r[1] * k[0] / n, r[1] * k[1] / n]
    corr = min(0.5, min(abs(x - y) for x, y in zip(t, e)))
    chi2 = sum((abs(x - y) - corr) ** 2 / y for x, y in zip(t, e))
    return chi2, math.erfc(math.sqrt(chi2 / 2))


def close(x, y, tol=1e-9):
    return abs(x - y) <= tol * max(1.0, abs(y))


def main():
    rng = random.Random(20161)
    n_cases = 0
    for _ in range(60):
        n1 = rng.randint(2, 3000)
        n2 = rng.randint(2, 3000)
        a = rng.randint(1, n1 - 1)
        b = rng.randint(1, n2 - 1)
        got = run("--counts", f"{a}/{n1}", f"{b}/{n2}")
        chi2, p = yates(a, n1 - a, b, n2 - b)
        assert got["df"] == 1
        assert close(got["chi2"], chi2), (a, n1, b, n2, got, chi2)
        assert close(got["p"], p), (a, n1, b, n2, got, p)
        n_cases += 1

    # Printed by R 4.2.2: chisq.test(matrix(c(1100, 1109, 323, 314), nrow = 2))
    got = run("--counts", "1100/1423", "1109/1423")
    assert abs(got["chi2"] - 0.1294433433) < 1e-9 and abs(got["p"] - 0.7190098991) < 1e-9, got
    # chisq.test(matrix(c(12, 5, 7, 7), nrow = 2)): X-squared = 0.64112, p-value = 0.4233
    got = run("--table", "12,7,5,7")
    assert abs(got["chi2"] - 0.64112) < 5e-6 and abs(got["p"] - 0.4233) < 5e-5, got
    # chisq.test(matrix(c(3, 1, 1, 3), nrow = 2)): X-squared = 0.5, p-value = 0.4795
    got = run("--table", "3,1,1,3")
    assert abs(got["chi2"] - 0.5) < 1e-12 and abs(got["p"] - 0.4795) < 5e-5, got
    # |O - E| < 0.5: the correction shrinks to |O - E| and R prints X-squared = 0, p = 1
    got = run("--table", "10,11,11,12")
    assert got["chi2"] == 0 and got["p"] == 1, got
    # mcnemar.test(matrix(c(794, 86, 150, 570), nrow = 2)) (R's documentation data):
    # McNemar's chi-squared = 16.81779661, p-value = 4.114562281e-05
    got = run("--table", "794,150,86,570", "--mcnemar")
    assert abs(got["chi2"] - 16.81779661) < 1e-7 and abs(got["p"] - 4.114562281e-05) < 1e-12, got

    # Two prediction files over the same 300 images plus 20 only in A.
    with tempfile.TemporaryDirectory() as tmp:
        pa, pb = os.path.join(tmp, "a.csv"), os.path.join(tmp, "b.csv")
        ca = cb = 0
        bb = cc = 0
        with open(pa, "w") as fa, open(pb, "w") as fb:
            fa.write("file,truth,top1,p1\n")
            fb.write("file,truth,top1,p1\n")
            for i in range(320):
                truth = rng.choice(["x", "y", "z"])
                ra = truth if rng.random() < 0.8 else "w"
                fa.write(f"img{i:04d}.dcm,{truth},{ra},0.9\n")
                ok_a = ra == truth
                ca += ok_a
                if i < 300:
                    rb = truth if rng.random() < 0.7 else "w"
                    fb.write(f"img{i:04d}.dcm,{truth},{rb},0.8\n")
                    ok_b = rb == truth
                    cb += ok_b
                    bb += ok_a and not ok_b
                    cc += ok_b and not ok_a
        got = run(pa, pb)
        assert got["table"] == [ca, 320 - ca, cb, 300 - cb], got
        chi2, p = yates(ca, 320 - ca, cb, 300 - cb)
        assert close(got["chi2"], chi2) and close(got["p"], p), got
        m = got["mcnemar"]
        assert m["n"] == 300 and m["b"] == bb and m["c"] == cc, m
        mchi = (abs(bb - cc) - 1) ** 2 / (bb + cc)
        assert close(m["chi2"], mchi) and close(m["p"], math.erfc(math.sqrt(mchi / 2))), m

    # bad input is a usage error, not a crash
    r = subprocess.run([USVIEW, "compare", "--counts", "5/3", "1/2"], capture_output=True)
    assert r.returncode == 2
    print(f"compare: {n_cases} random tables, R examples and paired files ok")


if __name__ == "__main__":
    sys.exit(main())
