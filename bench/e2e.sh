#!/bin/sh
# e2e.sh - usviewd end to end against the bare engine, in the same run.
#
#   sh bench/e2e.sh [-n INSTANCES] [-a ASSOCIATIONS] [-m MODEL] [-b BATCH] [-w WORKERS]
#                   [-t THREADS] [-k KEEPDIR] [-l LOGLEVEL] [-N] [-q QA]
#
# Pushes INSTANCES (default 500) synthetic phantom instances (1024x768 and
# 716x537, uncompressed) with DCMTK's storescu, over ASSOCIATIONS (default 4)
# concurrent associations, into a usviewd on loopback that
# classifies them and sends an SR for each to a storescp, and reports:
#   - usviewd images/s: from the first C-STORE to the last line in
#     results.jsonl (receive, decode, crop, inference, SR written, index), and
#     to the last SR stored at the PACS (plus the sender's C-STOREs);
#   - engine images/s: `usview bench --model MODEL` at the same batch, with
#     WORKERS x THREADS engine threads (inference alone, no I/O), run before
#     and after the daemon phase (their mean: the machine may be shared);
#   - their ratio (the goal is >= 0.9), usviewd's peak RSS (VmHWM) and the
#     CPU time usviewd used per instance (user + system, every stage, until
#     the last SR is stored) next to the engine's CPU time per image.
# -k KEEPDIR keeps the spool, logs and the PACS folder there (for timestamps
# and index timings); -l sets usviewd's log level (default warning). -N runs
# the peers (storescu, storescp) with Nagle's algorithm off (TCP_NODELAY=1).
# As shipped, DCMTK leaves it on, and each C-STORE response such a peer sends
# would wait for the sender's delayed ACK (about 40 ms per SR); usviewd's
# store associations acknowledge at once (TCP_QUICKACK, dicom/src/dcm_scu.cpp),
# so the two settings should give the same numbers.
# -q QA sets the technologist-label reading of the daemon: "off"
# (qa.labels=false), "labels" (DICOM attributes only, qa.ocr=false) or "ocr"
# (attributes, then OCR of the burned-in text); default: the configuration
# file's (config/usviewd.yaml). The environment variable USV_E2E_QA does the
# same. The mean per-instance timings of results.jsonl (decode, label
# reading and its OCR part, inference) are printed as well.
# Defaults: the demo model (build/demo-views.usvm, scripts/make-demo-model.sh),
# batch 8, 2 workers x 1 thread. Everything runs under a temporary folder.
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD="${USV_BUILD_DIR:-$ROOT/build}"
USVIEW="$BUILD/cli/usview"
USVIEWD="$BUILD/daemon/usviewd"
N=500
MODEL="$BUILD/demo-views.usvm"
BATCH=8
WORKERS=2
THREADS=1
ASSOC=4
KEEP=""
LOGLEVEL=warning
PEER_NODELAY=""
QA="${USV_E2E_QA:-}"
while getopts n:a:m:b:w:t:k:l:Nq: opt; do
	case $opt in
	n) N=$OPTARG ;;
	a) ASSOC=$OPTARG ;;
	m) MODEL=$OPTARG ;;
	b) BATCH=$OPTARG ;;
	w) WORKERS=$OPTARG ;;
	t) THREADS=$OPTARG ;;
	k) KEEP=$OPTARG ;;
	l) LOGLEVEL=$OPTARG ;;
	N) PEER_NODELAY=1 ;;
	q) QA=$OPTARG ;;
	*) sed -n '3,5p' "$0" >&2; exit 2 ;;
	esac
done
case "$QA" in
"") QASET="" ;;
off) QASET="--set qa.labels=false" ;;
labels) QASET="--set qa.labels=true --set qa.ocr=false" ;;
ocr) QASET="--set qa.labels=true --set qa.ocr=true" ;;
*) echo "e2e: -q $QA: expected off, labels or ocr" >&2; exit 2 ;;
esac
PY=/usr/bin/python3
[ -x "$USVIEWD" ] && [ -x "$USVIEW" ] || { echo "e2e: build first ($BUILD)" >&2; exit 1; }
[ -f "$MODEL" ] || { echo "e2e: $MODEL missing (scripts/make-demo-model.sh)" >&2; exit 1; }

W=$(mktemp -d "${TMPDIR:-/tmp}/usv-e2e.XXXXXX")
PIDS=""
cleanup() {
	for p in $PIDS; do kill -TERM "$p" 2>/dev/null || true; done
	for p in $PIDS; do wait "$p" 2>/dev/null || true; done
	if [ -n "$KEEP" ]; then
		rm -rf "$KEEP" && mv "$W" "$KEEP" && echo "e2e: kept in $KEEP" >&2
	else
		rm -rf "$W"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
	"$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

studies=$(((N + 10) / 11))
"$USVIEW" phantom --out "$W/in" --studies "$studies" --seed 5 >/dev/null
find "$W/in" -name '*.dcm' | sort | head -n "$N" >"$W/list"
N=$(wc -l <"$W/list")

PORT=$(free_port)
PACS=$(free_port)
mkdir -p "$W/pacs"
peer() { # only in background jobs (exec)
	if [ -n "$PEER_NODELAY" ]; then TCP_NODELAY=1 exec "$@"; else exec "$@"; fi
}
peer storescp -aet PACS -od "$W/pacs" "$PACS" >"$W/pacs.log" 2>&1 &
PIDS="$!"
"$USVIEWD" -c "$ROOT/config/usviewd.yaml" --bind 127.0.0.1 --port "$PORT" --spool "$W/spool" \
	--model "$MODEL" --send-to "PACS@127.0.0.1:$PACS" --set spool.min_free_mb=0 \
	--set log.journald=false --set http.enabled=false --set log.level="$LOGLEVEL" \
	--set model.batch_size="$BATCH" --set model.workers="$WORKERS" \
	--set model.threads="$THREADS" $QASET 2>"$W/usviewd.log" &
DPID=$!
PIDS="$DPID $PIDS"
i=0
until echoscu -aec USVIEW 127.0.0.1 "$PORT" >/dev/null 2>&1; do
	i=$((i + 1))
	[ $i -le 150 ] && kill -0 "$DPID" 2>/dev/null || { cat "$W/usviewd.log" >&2; exit 1; }
	sleep 0.2
done

# The engine runs once before and once after the daemon phase (other load on
# the machine changes over a run); the mean is the reference.
"$USVIEW" bench --model "$MODEL" --batch "$BATCH" --threads $((WORKERS * THREADS)) \
	--iters 20 --json >"$W/engine0.json"
t0=$("$PY" -c 'import time; print(time.time())')
split -n "r/$ASSOC" "$W/list" "$W/part."
SENDERS=""
for part in "$W"/part.*; do
	# shellcheck disable=SC2046
	peer storescu -aec USVIEW -aet BENCH 127.0.0.1 "$PORT" $(cat "$part") >"$part.log" 2>&1 &
	SENDERS="$SENDERS $!"
done
for p in $SENDERS; do wait "$p" || echo "e2e: a storescu failed (see $W)" >&2; done
"$PY" - "$W/spool/results.jsonl" "$N" "$t0" "$DPID" "$W/pacs" >"$W/daemon.json" <<'PYEOF'
import json, os, sys, time
index, n, t0, pid, pacs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
deadline = time.time() + 1800
seen, t_classified = set(), None
tm = {}
while time.time() < deadline:
    if t_classified is None and os.path.exists(index):
        with open(index) as f:
            for line in f:
                try:
                    j = json.loads(line)
                    seen.add(j["sop_instance_uid"])
                    for k, v in j.get("timings_ms", {}).items():
                        if k != "batch" and j.get("outcome") == "done":
                            tm.setdefault(k, []).append(v)
                except (ValueError, KeyError):
                    pass
        if len(seen) >= n:
            t_classified = time.time()
    if t_classified is not None and len(os.listdir(pacs)) >= n:
        break
    time.sleep(0.05)
t_sent = time.time()
hwm = 0
with open("/proc/%s/status" % pid) as f:
    for line in f:
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) / 1024.0
with open("/proc/%s/stat" % pid) as f:
    st = f.read().rsplit(")", 1)[1].split()
cpu = (int(st[11]) + int(st[12])) / float(os.sysconf("SC_CLK_TCK"))
print(json.dumps({"n": len(seen), "sent": len(os.listdir(pacs)),
                  "classified_s": (t_classified or t_sent) - t0, "sent_s": t_sent - t0,
                  "peak_rss_mb": hwm, "cpu_s": cpu,
                  "timings_ms": {k: sum(v) / len(v) for k, v in tm.items() if v}}))
PYEOF
"$USVIEW" bench --model "$MODEL" --batch "$BATCH" --threads $((WORKERS * THREADS)) \
	--iters 20 --json >"$W/engine.json"
"$PY" - "$W/daemon.json" "$W/engine.json" "$BATCH" "$WORKERS" "$THREADS" "$W/engine0.json" "$QA" <<'PYEOF'
import json, sys
d = json.load(open(sys.argv[1]))
e = json.load(open(sys.argv[2]))
e0 = json.load(open(sys.argv[6]))
batch, workers, threads = sys.argv[3], sys.argv[4], sys.argv[5]
t = d.get("timings_ms", {})
cls = d["n"] / d["classified_s"]
sr = d["sent"] / d["sent_s"]
eng = (e["images_per_s"] + e0["images_per_s"]) / 2
print("instances %d, batch %s, %s workers x %s threads, qa %s" % (d["n"], batch, workers,
                                                                  threads, sys.argv[7] or "config"))
print("usviewd classified %7.1f images/s  (C-STORE -> results index, %.1f s)" % (cls, d["classified_s"]))
print("usviewd SR at PACS %7.1f images/s  (C-STORE -> SR stored at the PACS, %d in %.1f s)" %
      (sr, d["sent"], d["sent_s"]))
print("engine             %7.1f images/s  (usview bench, inference only; mean of %.1f before"
      " and %.1f after)" % (eng, e0["images_per_s"], e["images_per_s"]))
print("ratios to the engine: classified %.2f, SR delivered %.2f" % (cls / eng, sr / eng))
print("peak RSS: usviewd %.0f MiB, usview bench %.0f MiB" % (d["peak_rss_mb"], e["peak_rss_mb"]))
ecpu = (e.get("cpu_ms_per_image", 0) + e0.get("cpu_ms_per_image", 0)) / 2
print("CPU per image: usviewd %.1f ms (%.1f s user+system, every stage), engine %.1f ms"
      " (inference)" % (1000.0 * d["cpu_s"] / max(d["n"], 1), d["cpu_s"], ecpu))
print("mean per instance (results.jsonl): decode %.1f ms, label %.1f ms (OCR %.1f ms),"
      " infer %.1f ms, total %.1f ms" % (t.get("decode", 0), t.get("label", 0), t.get("ocr", 0),
                                         t.get("infer", 0), t.get("total", 0)))
PYEOF
