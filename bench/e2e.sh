#!/bin/sh
# e2e.sh - usviewd end to end against the bare engine, in the same run.
#
#   sh bench/e2e.sh [-n INSTANCES] [-m MODEL] [-b BATCH] [-w WORKERS] [-t THREADS]
#
# Pushes INSTANCES (default 500) synthetic phantom instances (1024x768 and
# 716x537, uncompressed) with DCMTK's storescu into a usviewd on loopback that
# classifies them and sends an SR for each to a storescp, and reports:
#   - usviewd images/s: from the first instance received to the last result
#     line in results.jsonl (receive, decode, crop, inference, SR, index);
#   - engine images/s: `usview bench --model MODEL` at the same batch, with
#     WORKERS x THREADS engine threads (inference alone, no I/O);
#   - their ratio (the goal is >= 0.9), and usviewd's peak RSS (VmHWM).
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
while getopts n:m:b:w:t: opt; do
	case $opt in
	n) N=$OPTARG ;;
	m) MODEL=$OPTARG ;;
	b) BATCH=$OPTARG ;;
	w) WORKERS=$OPTARG ;;
	t) THREADS=$OPTARG ;;
	*) sed -n '3,4p' "$0" >&2; exit 2 ;;
	esac
done
PY=/usr/bin/python3
[ -x "$USVIEWD" ] && [ -x "$USVIEW" ] || { echo "e2e: build first ($BUILD)" >&2; exit 1; }
[ -f "$MODEL" ] || { echo "e2e: $MODEL missing (scripts/make-demo-model.sh)" >&2; exit 1; }

W=$(mktemp -d "${TMPDIR:-/tmp}/usv-e2e.XXXXXX")
PIDS=""
cleanup() {
	for p in $PIDS; do kill -TERM "$p" 2>/dev/null || true; done
	for p in $PIDS; do wait "$p" 2>/dev/null || true; done
	rm -rf "$W"
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
storescp -aet PACS -od "$W/pacs" "$PACS" >"$W/pacs.log" 2>&1 &
PIDS="$!"
"$USVIEWD" -c "$ROOT/config/usviewd.yaml" --bind 127.0.0.1 --port "$PORT" --spool "$W/spool" \
	--model "$MODEL" --send-to "PACS@127.0.0.1:$PACS" --set spool.min_free_mb=0 \
	--set log.journald=false --set http.enabled=false --set log.level=warning \
	--set model.batch_size="$BATCH" --set model.workers="$WORKERS" \
	--set model.threads="$THREADS" 2>"$W/usviewd.log" &
DPID=$!
PIDS="$DPID $PIDS"
i=0
until echoscu -aec USVIEW 127.0.0.1 "$PORT" >/dev/null 2>&1; do
	i=$((i + 1))
	[ $i -le 150 ] && kill -0 "$DPID" 2>/dev/null || { cat "$W/usviewd.log" >&2; exit 1; }
	sleep 0.2
done

t0=$("$PY" -c 'import time; print(time.time())')
# shellcheck disable=SC2046
storescu -aec USVIEW -aet BENCH 127.0.0.1 "$PORT" $(cat "$W/list") >"$W/storescu.log" 2>&1
"$PY" - "$W/spool/results.jsonl" "$N" "$t0" "$DPID" >"$W/daemon.json" <<'PYEOF'
import json, os, sys, time
index, n, t0, pid = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
deadline = time.time() + 1800
seen = set()
while time.time() < deadline:
    if os.path.exists(index):
        with open(index) as f:
            for line in f:
                try:
                    seen.add(json.loads(line)["sop_instance_uid"])
                except (ValueError, KeyError):
                    pass
    if len(seen) >= n:
        break
    time.sleep(0.05)
t1 = time.time()
hwm = 0
with open("/proc/%s/status" % pid) as f:
    for line in f:
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) / 1024.0
print(json.dumps({"n": len(seen), "seconds": t1 - t0, "images_per_s": len(seen) / (t1 - t0),
                  "peak_rss_mb": hwm}))
PYEOF
sent=$(find "$W/pacs" -type f | wc -l)
"$USVIEW" bench --model "$MODEL" --batch "$BATCH" --threads $((WORKERS * THREADS)) \
	--iters 20 --json >"$W/engine.json"
"$PY" - "$W/daemon.json" "$W/engine.json" "$sent" "$BATCH" "$WORKERS" "$THREADS" <<'PYEOF'
import json, sys
d = json.load(open(sys.argv[1]))
e = json.load(open(sys.argv[2]))
sent, batch, workers, threads = sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
print("instances %d, batch %s, %s workers x %s threads; SRs at the PACS: %s" %
      (d["n"], batch, workers, threads, sent))
print("usviewd  %8.1f images/s  (C-STORE -> classified -> SR, %.1f s)  peak RSS %.0f MiB" %
      (d["images_per_s"], d["seconds"], d["peak_rss_mb"]))
print("engine   %8.1f images/s  (usview bench, inference only)        peak RSS %.0f MiB" %
      (e["images_per_s"], e["peak_rss_mb"]))
print("ratio usviewd / engine: %.2f" % (d["images_per_s"] / e["images_per_s"]))
PYEOF
