#!/usr/bin/env python3
"""soak.py - usviewd under a long steady load: resources flat, nothing lost.

Starts usviewd (a tiny random-weight model from make_model, 2 workers, a
storescp sink as the destination of the SRs), generates N small synthetic
US instances (64 x 80, fresh SOP Instance UIDs) and sends them over
--assoc concurrent associations (storescu processes, --per-assoc instances
per association). Every --interval seconds it samples the daemon's RSS
(VmRSS), threads (/proc/PID/status) and open file descriptors
(/proc/PID/fd), and GET /healthz.

Checks (exit status 1 when one fails):
  - every instance storescu saw acknowledged (Success or Warning) has
    exactly one line in results.jsonl (and its rotated files), matched on
    SOP Instance UID, and no instance was left unacknowledged;
  - after warm-up (the first --warmup fraction of the sending phase) up to
    the start of the last association, RSS, fds and threads are flat: the
    median of the last third of those samples is within --tolerance of the
    median of the first third (the drift; the largest deviation of one sample from
    the median is printed too: fds move with the number of associations
    open at that instant, so single samples are not judged, and the fds'
    drift may also reach --fd-slack, a socket and a spool file per
    association);
  - once idle again, the daemon holds no more fds and threads than before
    the first association;
  - /healthz answered 200 to every sample;
  - usviewd stops cleanly on SIGTERM (exit 0; under ASan also no leaks).
Under AddressSanitizer (libasan mapped in the daemon) RSS is printed but
not judged: the quarantine and shadow memory grow for a long time.

Writes OUT/soak.csv (the samples), OUT/soak.svg (RSS, fds, threads and
instances over time) and, where matplotlib is installed, OUT/soak.png.

usage: bench/soak.py [--usviewd build/daemon/usviewd]
                     [--make-model build/tests/integration/daemon/make_model]
                     [-n 10000] [--assoc 16] [--out soak-results]
"""

import argparse
import csv
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration", "daemon"))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration", "lib"))


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--usviewd", default="build/daemon/usviewd")
    ap.add_argument("--make-model", default="build/tests/integration/daemon/make_model")
    ap.add_argument("-n", type=int, default=10000, help="instances (default 10000)")
    ap.add_argument("--assoc", type=int, default=16, help="concurrent associations")
    ap.add_argument("--per-study", type=int, default=40,
                    help="instances per study (default 40; the QA study tracker rewrites a "
                         "study's state per instance)")
    ap.add_argument("--per-assoc", type=int, default=0,
                    help="instances per association (default N / assoc / 4, at most 100)")
    ap.add_argument("--interval", type=float, default=1.0, help="sampling period, s")
    ap.add_argument("--warmup", type=float, default=0.2,
                    help="fraction of the sending phase left out of the flatness check")
    ap.add_argument("--tolerance", type=float, default=0.05,
                    help="allowed deviation from the median after warm-up")
    ap.add_argument("--fd-slack", type=int, default=-1,
                    help="fds the drift may reach whatever the tolerance (default 2 x "
                    "--assoc: a socket and a spool file per open association)")
    ap.add_argument("--no-sink", action="store_true", help="no destination for the SRs")
    ap.add_argument("--timeout", type=float, default=3600, help="give up after, s")
    ap.add_argument("--out", default="soak-results")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    return ap.parse_args()


def proc_sample(pid):
    rss = threads = None
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    fds = len(os.listdir("/proc/%d/fd" % pid))
    return rss, fds, threads


def healthz(port):
    t = time.monotonic()
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/healthz" % port, timeout=5) as r:
            code = r.status
    except urllib.error.HTTPError as e:
        code = e.code
    except OSError:
        code = 0
    return code, (time.monotonic() - t) * 1000.0


def make_instances(daemonlib, d, n, per_study):
    """n copies of one template with fresh, equally long SOP Instance UIDs
    and, every per_study instances, a fresh Study Instance UID (real
    studies hold tens of images), substituted in the bytes (file meta and
    data set)."""
    prefix = "2.25.%030d." % random.randrange(10 ** 29, 10 ** 30)
    uid = lambda i: prefix + "%08d" % i  # noqa: E731  (44 characters, even)
    sprefix = "2.25.%030d." % random.randrange(10 ** 29, 10 ** 30)
    suid = lambda i: sprefix + "%08d" % i  # noqa: E731
    tpl = os.path.join(d, "template.dcm")
    daemonlib.make_us(tpl, sop_uid=uid(99999999), study_uid=suid(99999999), seed=3)
    data = open(tpl, "rb").read()
    old = uid(99999999).encode()
    old_study = suid(99999999).encode()
    if data.count(old) != 2:
        raise RuntimeError("template: SOP Instance UID found %d times" % data.count(old))
    if data.count(old_study) != 1:
        raise RuntimeError("template: Study Instance UID found %d times"
                           % data.count(old_study))
    paths, uids = [], []
    for i in range(n):
        p = os.path.join(d, "i%08d.dcm" % i)
        with open(p, "wb") as f:
            f.write(data.replace(old, uid(i).encode())
                    .replace(old_study, suid(i // max(per_study, 1)).encode()))
        paths.append(p)
        uids.append(uid(i))
    os.unlink(tpl)
    return paths, uids


_SENDING = re.compile(r"Sending file: (\S+)")
_RESP = re.compile(r"Received Store Response \((\w+)")


def sender(port, queue, lock, acked, refused, errors, drained):
    while True:
        with lock:
            if not queue:
                if not drained:
                    drained.append(time.monotonic())
                return
            chunk = queue.pop()
        r = subprocess.run(["storescu", "-v", "-aet", "SOAK", "-aec", "USVIEW", "127.0.0.1",
                            str(port)] + [p for p, _ in chunk], capture_output=True)
        by_path = dict(chunk)
        cur = None
        ok = set()
        for line in r.stdout.decode(errors="replace").splitlines() + \
                r.stderr.decode(errors="replace").splitlines():
            m = _SENDING.search(line)
            if m:
                cur = m.group(1)
                continue
            m = _RESP.search(line)
            if m and cur:
                if m.group(1) in ("Success", "Warning"):
                    ok.add(by_path[cur])
                cur = None
        with lock:
            acked.extend(ok)
            refused.extend(u for _, u in chunk if u not in ok)
            if r.returncode != 0:
                errors.append(r.stderr.decode(errors="replace")[-300:])


def read_index(spool):
    lines = []
    for name in sorted(os.listdir(spool)):
        if name == "results.jsonl" or name.startswith("results.jsonl."):
            with open(os.path.join(spool, name)) as f:
                lines += [json.loads(x) for x in f if x.endswith("\n")]
    return lines


def count_index(spool):
    n = 0
    for name in os.listdir(spool):
        if name == "results.jsonl" or name.startswith("results.jsonl."):
            with open(os.path.join(spool, name), "rb") as f:
                n += f.read().count(b"\n")
    return n


def flatness(samples, key, t0, t1):
    """(drift, max deviation, median, n) over the samples in [t0, t1]: drift
    is the median of the last third against the median of the first third,
    the deviation the largest distance from the median; both relative."""
    xs = [s[key] for s in samples if t0 <= s["t"] <= t1 and s[key] is not None]
    if len(xs) < 6:
        return None, None, None, len(xs)
    k = len(xs) // 3
    first, last, med = statistics.median(xs[:k]), statistics.median(xs[-k:]), statistics.median(xs)
    return (last - first) / first, max(abs(x - med) for x in xs) / med, med, len(xs)


def svg_plot(path, samples, t_warm, t_end, title):
    series = [("rss_kb", "RSS (MiB)", 1 / 1024.0, "#1f77b4"), ("fds", "open fds", 1, "#d62728"),
              ("threads", "threads", 1, "#2ca02c"), ("results", "results", 1, "#7f7f7f")]
    W, H, ml, mr, mt = 900, 170, 70, 20, 40
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
           'font-family="sans-serif" font-size="12">' % (W, mt + H * len(series) + 30),
           '<rect width="100%" height="100%" fill="white"/>',
           '<text x="%d" y="22" font-size="15">%s</text>' % (ml, title)]
    tmax = max(s["t"] for s in samples) or 1.0
    for k, (key, label, scale, colour) in enumerate(series):
        y0 = mt + k * H
        ph = H - 40
        vals = [s[key] * scale for s in samples if s[key] is not None]
        lo, hi = (min(vals), max(vals)) if vals else (0, 1)
        if hi - lo < 1e-9:
            lo, hi = lo - 1, hi + 1
        pad = (hi - lo) * 0.1
        lo, hi = lo - pad, hi + pad
        X = lambda t: ml + (W - ml - mr) * t / tmax  # noqa: E731
        Y = lambda v: y0 + ph - ph * (v - lo) / (hi - lo)  # noqa: E731
        out.append('<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#999"/>'
                   % (ml, y0, W - ml - mr, ph))
        out.append('<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="#eee"/>'
                   % (X(0), y0, X(t_warm) - X(0), ph))
        out.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#999" '
                   'stroke-dasharray="4"/>' % (X(t_end), y0, X(t_end), y0 + ph))
        pts = " ".join("%.1f,%.1f" % (X(s["t"]), Y(s[key] * scale))
                       for s in samples if s[key] is not None)
        out.append('<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>'
                   % (colour, pts))
        for v in (lo + pad, hi - pad):
            out.append('<text x="%d" y="%.1f" text-anchor="end">%.1f</text>'
                       % (ml - 4, Y(v) + 4, v))
        out.append('<text x="%d" y="%d" fill="%s">%s</text>' % (ml + 6, y0 + 14, colour, label))
        out.append('<text x="%d" y="%d" text-anchor="end">%.0f s</text>'
                   % (W - mr, y0 + ph + 14, tmax))
    out.append('<text x="%d" y="%d">grey: warm-up; dashed: last association started</text>'
               % (ml, mt + H * len(series) + 10))
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def png_plot(path, samples, t_warm, t_end, title):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    keys = [("rss_kb", "RSS (MiB)", 1 / 1024.0), ("fds", "open fds", 1),
            ("threads", "threads", 1), ("results", "results", 1)]
    fig, axs = plt.subplots(len(keys), 1, sharex=True, figsize=(9, 8))
    for ax, (key, label, scale) in zip(axs, keys):
        ax.plot([s["t"] for s in samples], [s[key] * scale for s in samples])
        ax.axvspan(0, t_warm, color="0.9")
        ax.axvline(t_end, color="0.5", ls="--")
        ax.set_ylabel(label)
    axs[-1].set_xlabel("s")
    axs[0].set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return True


def main():
    a = parse_args()
    if not os.path.exists(a.usviewd):
        sys.exit("soak: no usviewd at %s (--usviewd)" % a.usviewd)
    if not os.path.exists(a.make_model):
        sys.exit("soak: no make_model at %s (--make-model)" % a.make_model)
    os.environ["USVIEWD"] = os.path.abspath(a.usviewd)
    import daemonlib
    import usvtest

    tmp = tempfile.mkdtemp(prefix="usv-soak-")
    os.makedirs(a.out, exist_ok=True)
    try:
        return run(a, tmp, daemonlib, usvtest)
    finally:
        usvtest._cleanup()
        if not a.keep:
            shutil.rmtree(tmp, True)
        else:
            print("kept %s" % tmp)


def run(a, tmp, daemonlib, usvtest):
    model = os.path.join(tmp, "tiny.model")
    subprocess.run([a.make_model, model], check=True, stdout=subprocess.DEVNULL)
    t = time.monotonic()
    indir = os.path.join(tmp, "in")
    os.makedirs(indir)
    paths, uids = make_instances(daemonlib, indir, a.n, a.per_study)
    print("soak: %d instances generated in %.1f s" % (a.n, time.monotonic() - t), flush=True)

    dests = []
    if not a.no_sink:
        sink_port = usvtest.free_port()
        sink_dir = os.path.join(tmp, "sink")
        os.makedirs(sink_dir)
        sink = usvtest.Proc(["storescp", "-aet", "SINK", "--ignore", "-od", sink_dir,
                             str(sink_port)], log_path=os.path.join(tmp, "sink.log"))
        if not usvtest.wait_port(sink_port, 10, sink.p):
            sys.exit("soak: storescp sink did not start")
        dests = [{"name": "sink", "ae_title": "SINK", "host": "127.0.0.1", "port": sink_port,
                  "send": ["sr"]}]
    d = daemonlib.Usviewd(tmp, model, destinations=dests, extra={
        "listen": {"max_associations": a.assoc + 4, "acse_timeout": 30, "dimse_timeout": 60}})
    d.start(timeout=120)
    pid = d.proc.pid
    with open("/proc/%d/maps" % pid) as f:
        asan = "libasan" in f.read()

    items = list(zip(paths, uids))
    if a.fd_slack < 0:
        a.fd_slack = 2 * a.assoc
    if a.per_assoc <= 0:
        a.per_assoc = max(1, min(100, a.n // (a.assoc * 4)))
    queue = [items[i:i + a.per_assoc] for i in range(0, len(items), a.per_assoc)][::-1]
    lock = threading.Lock()
    acked, refused, errors, last_chunk = [], [], [], []
    samples = []
    stop = threading.Event()
    first = threading.Event()
    t0 = time.monotonic()

    def sampler():
        while not stop.is_set():
            ts = time.monotonic()
            try:
                rss, fds, threads = proc_sample(pid)
            except OSError:
                rss = fds = threads = None
            code, ms = healthz(d.http_port)
            with lock:
                nack = len(acked)
            samples.append({"t": round(ts - t0, 3), "rss_kb": rss, "fds": fds,
                            "threads": threads, "healthz": code, "healthz_ms": round(ms, 1),
                            "acked": nack, "results": count_index(d.spool)})
            first.set()  # the first sample is taken before any association
            stop.wait(max(0.0, a.interval - (time.monotonic() - ts)))

    st = threading.Thread(target=sampler, daemon=True)
    st.start()
    first.wait()
    senders = [threading.Thread(target=sender, args=(d.port, queue, lock, acked, refused,
                                                     errors, last_chunk)) for _ in range(a.assoc)]
    for s in senders:
        s.start()
    for s in senders:
        s.join(max(1.0, a.timeout - (time.monotonic() - t0)))
    t_end = time.monotonic() - t0
    idle = d.wait_idle(max(60.0, a.timeout - t_end))
    t_drained = time.monotonic() - t0
    time.sleep(max(3 * a.interval, 2.0))
    stop.set()
    st.join()
    rc = d.stop(timeout=120)
    leak = any(w in d.log() for w in ("LeakSanitizer", "AddressSanitizer", "runtime error:"))

    lines = read_index(d.spool)
    count = {}
    for x in lines:
        count[x["sop_instance_uid"]] = count.get(x["sop_instance_uid"], 0) + 1
    outcomes = {}
    for x in lines:
        outcomes[x["outcome"]] = outcomes.get(x["outcome"], 0) + 1
    missing = [u for u in acked if count.get(u, 0) == 0]
    dup = [u for u in acked if count.get(u, 0) > 1]
    acked_set = set(acked)
    extra = [u for u in count if u not in acked_set]

    # judged from the end of warm-up to when the last association started:
    # after that fewer than --assoc associations remain open
    t_full = (last_chunk[0] - t0) if last_chunk else t_end
    t_warm = a.warmup * t_full
    flat = {k: flatness(samples, k, t_warm, t_full) for k in ("rss_kb", "fds", "threads")}
    bad_health = [s for s in samples if s["healthz"] != 200]

    with open(os.path.join(a.out, "soak.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(samples[0].keys()))
        w.writeheader()
        w.writerows(samples)
    title = "usviewd soak: %d instances, %d associations" % (a.n, a.assoc)
    svg_plot(os.path.join(a.out, "soak.svg"), samples, t_warm, t_full, title)
    png = png_plot(os.path.join(a.out, "soak.png"), samples, t_warm, t_full, title)

    ck = usvtest.Check("soak")
    print("soak: sent in %.1f s (%.0f instances/s; last association at %.1f s), drained at "
          "%.1f s, %d samples" % (t_end, len(acked) / max(t_end, 1e-9), t_full, t_drained,
                                  len(samples)))
    print("soak: acknowledged %d, refused/unacknowledged %d, index lines %d %s"
          % (len(acked), len(refused), len(lines), outcomes))
    ck(idle, "spool not drained")
    ck(not refused and not errors, "%d instances not acknowledged; storescu: %s"
       % (len(refused), errors[:2]))
    ck(not missing and not dup and not extra,
       "results: %d acknowledged without a line, %d with more than one, %d lines not "
       "acknowledged" % (len(missing), len(dup), len(extra)))
    for k, (drift, dev, med, n) in flat.items():
        if drift is None:
            ck(False, "%s: only %d samples after warm-up (longer run or shorter --interval)"
               % (k, n))
            continue
        vals = [s[k] for s in samples if s[k] is not None]
        print("soak: %-7s median %8.0f after warm-up, drift %+6.2f %%, max deviation %6.2f %% "
              "(%d samples); idle before %d, after %d"
              % (k, med, drift * 100, dev * 100, n, vals[0], vals[-1]))
        slack = a.fd_slack / med if k == "fds" else 0.0
        if k == "rss_kb" and asan:
            print("soak: rss_kb not judged under AddressSanitizer (its quarantine and shadow "
                  "memory grow; LeakSanitizer at exit judges leaks)")
        else:
            ck(abs(drift) <= max(a.tolerance, slack), "%s drifts %.2f %% > %.2f %%"
               % (k, drift * 100, max(a.tolerance, slack) * 100))
        if k != "rss_kb":
            ck(vals[-1] <= vals[0], "%s: %d when idle after the run, %d before"
               % (k, vals[-1], vals[0]))
    hz = [s["healthz_ms"] for s in samples]
    print("soak: /healthz %d/%d answered 200, max %.0f ms"
          % (len(samples) - len(bad_health), len(samples), max(hz) if hz else 0))
    ck(not bad_health, "/healthz not 200 at %s" % [(s["t"], s["healthz"]) for s in
                                                     bad_health[:5]])
    ck(rc == 0 and not leak, "usviewd stop: exit %s%s" % (rc, ", sanitizer report" if leak
                                                          else ""))
    if rc != 0 or leak:
        print(d.log()[-3000:])
    print("soak: wrote %s/soak.csv, soak.svg%s" % (a.out, ", soak.png" if png else ""))
    ck.done()


if __name__ == "__main__":
    main()
