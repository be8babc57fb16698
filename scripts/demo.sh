#!/bin/sh
# demo.sh - the usview node end to end, on this machine, in one command.
#
#   sh scripts/install-deps.sh && sh scripts/demo.sh
#
# 1. builds everything (cmake, ./build);
# 2. makes sure a demo model exists: $USV_DEMO_MODEL if set, else
#    build/demo-views.usvm, made once by scripts/make-demo-model.sh:
#    MobileNet v1 (../shared/models/mobilenet, imported with `usview
#    import-tflite`) + a head for the paper's 11 views trained (`usview
#    train`) on synthetic phantom studies (`usview phantom`) (without that
#    script, a smaller version of the same recipe runs here);
# 3. starts a stand-in PACS (DCMTK storescp) and usviewd on 127.0.0.1 with
#    the shipped default configuration (config/usviewd.yaml) plus
#    command-line overrides for the spool, the model, the ports and the
#    destination;
# 4. sends one synthetic study (11 views, not used in training) with DCMTK's
#    storescu, waits for the results and prints a table of the predicted
#    views next to the true ones (from the spool's results.jsonl);
# 5. keeps running until interrupted (Ctrl-C): send more with
#      storescu -aec USVIEW 127.0.0.1 <port> FILE...
#    and watch http://127.0.0.1:<http port>/metrics.
#
# Environment: USV_DEMO_MODEL (use this model), USV_DEMO_PORT (DICOM port,
# default 11112), USV_DEMO_HTTP_PORT (default 9104), JOBS (build jobs),
# USV_SHARED_DIR (default ../shared), USV_BUILD_DIR (default ./build),
# USV_DEMO_EXIT=1 (exit after the table).
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD="${USV_BUILD_DIR:-$ROOT/build}"
DEMO="$BUILD/demo"
SHARED="${USV_SHARED_DIR:-$ROOT/../shared}"
JOBS="${JOBS:-$(nproc)}"

# Debian's interpreter (python3-pydicom), not a virtualenv's
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3

say() { printf '\n== %s\n' "$*"; }

say "building (cmake, $BUILD)"
mkdir -p "$BUILD"
if ! { cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo &&
	cmake --build "$BUILD" -j "$JOBS"; } >"$BUILD/demo-build.log" 2>&1; then
	# the demo needs only the two programs: go on if they build
	grep -E 'error' "$BUILD/demo-build.log" | head -5 >&2 || true
	echo "warning: the full build failed (log: $BUILD/demo-build.log);" \
		"building usviewd and usview only" >&2
	if ! cmake --build "$BUILD" -j "$JOBS" --target usviewd usview \
		>>"$BUILD/demo-build.log" 2>&1; then
		tail -40 "$BUILD/demo-build.log" >&2
		echo "build failed (full log: $BUILD/demo-build.log)" >&2
		exit 1
	fi
fi
USVIEW="$BUILD/cli/usview"
USVIEWD="$BUILD/daemon/usviewd"
mkdir -p "$DEMO"

# ---- model ------------------------------------------------------------------
MODEL="${USV_DEMO_MODEL:-$BUILD/demo-views.usvm}"
if [ ! -f "$MODEL" ]; then
	if [ -f "$ROOT/scripts/make-demo-model.sh" ]; then
		say "building the demo model with scripts/make-demo-model.sh (once)"
		USVIEW="$USVIEW" USV_SHARED_DIR="$SHARED" \
			sh "$ROOT/scripts/make-demo-model.sh" -b "$BUILD" -o "$MODEL"
	else
		say "training the demo model (MobileNet v1 features + 11-view head on phantom data)"
		MN="$SHARED/models/mobilenet"
		"$USVIEW" import-tflite "$MN/mobilenet_v1_1.0_224_quant_embedding_extractor.tflite" \
			--head "$MN/mobilenet_quant_v1_224_head_layers.tflite" \
			--labels "$MN/imagenet_labels.txt" --name "MobileNet v1 1.0 224 (ImageNet)" \
			-o "$DEMO/mobilenet_v1.usvm"
		rm -rf "$DEMO/train"
		"$USVIEW" phantom --out "$DEMO/train" --studies 8 --per-view 2 --seed 11
		"$USVIEW" train --preset mobilenet --backbone "$DEMO/mobilenet_v1.usvm" \
			--data "$DEMO/train/labels.csv" --iterations 3000 --views 1 \
			--threads "$JOBS" --name "usview abdominal views (phantom demo)" \
			-o "$MODEL.tmp" --quiet
		mv "$MODEL.tmp" "$MODEL"
	fi
fi
"$USVIEW" model-info "$MODEL" | sed -n '1,5p'

# ---- ports, a stand-in PACS, the node -------------------------------------------
free_port() { # free_port WANTED: WANTED if it is free, else any free port
	"$PY" - "$1" <<'EOF'
import socket, sys
for p in (int(sys.argv[1]), 0):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
        print(s.getsockname()[1])
        break
    except OSError:
        pass
    finally:
        s.close()
EOF
}
PORT=$(free_port "${USV_DEMO_PORT:-11112}")
HTTP=$(free_port "${USV_DEMO_HTTP_PORT:-9104}")
PACS_PORT=$(free_port 11113)

PIDS=""
cleanup() {
	for p in $PIDS; do kill -TERM "$p" 2>/dev/null || true; done
	for p in $PIDS; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rm -rf "$DEMO/spool" "$DEMO/pacs" "$DEMO/study"
mkdir -p "$DEMO/pacs"
storescp -aet PACS -od "$DEMO/pacs" "$PACS_PORT" >"$DEMO/pacs.log" 2>&1 &
PIDS="$!"

say "starting usviewd on 127.0.0.1:$PORT (AE USVIEW), http://127.0.0.1:$HTTP/metrics"
"$USVIEWD" -c "$ROOT/config/usviewd.yaml" --bind 127.0.0.1 --port "$PORT" \
	--spool "$DEMO/spool" --model "$MODEL" --http-port "$HTTP" \
	--set spool.min_free_mb=0 --set log.journald=false \
	--send-to "PACS@127.0.0.1:$PACS_PORT" 2>"$DEMO/usviewd.log" &
DPID=$!
PIDS="$DPID $PIDS"
i=0
until echoscu -aec USVIEW 127.0.0.1 "$PORT" >/dev/null 2>&1; do
	i=$((i + 1))
	if [ $i -gt 150 ] || ! kill -0 "$DPID" 2>/dev/null; then
		echo "usviewd did not start:" >&2
		cat "$DEMO/usviewd.log" >&2
		exit 1
	fi
	sleep 0.2
done

# ---- a study --------------------------------------------------------------------
say "sending a synthetic study of the 11 views (storescu)"
"$USVIEW" phantom --out "$DEMO/study" --studies 1 --per-view 1 --seed 11 \
	--first-study 1000 >/dev/null
storescu -aec USVIEW -aet DEMO +sd +r +sp '*.dcm' 127.0.0.1 "$PORT" "$DEMO/study"
N=$(find "$DEMO/study" -name '*.dcm' | wc -l)

"$PY" - "$DEMO/spool/results.jsonl" "$DEMO/study" "$N" "$DEMO/pacs" <<'EOF'
import csv, json, os, sys, time
import pydicom
index, study, n, pacs = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
truth = {}
with open(os.path.join(study, "labels.csv")) as f:
    for row in csv.DictReader(f):
        p = os.path.join(study, row["path"])
        truth[pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID] = (row["path"],
                                                                               row["label"])
recs = {}
end = time.monotonic() + 180
while time.monotonic() < end and len(recs) < n:
    if os.path.exists(index):
        with open(index) as f:
            for line in f:
                if line.endswith("\n"):
                    r = json.loads(line)
                    if r["sop_instance_uid"] in truth:
                        recs[r["sop_instance_uid"]] = r
    time.sleep(0.3)
print("\n%-18s %-19s %-19s %6s  %-25s %8s" % ("instance", "true view", "predicted", "p",
                                             "second", "ms"))
print("-" * 102)
ok = 0
for uid, (path, label) in sorted(truth.items(), key=lambda t: t[1][0]):
    r = recs.get(uid)
    if r is None:
        print("%-18s %-19s %s" % (path, label, "(no result yet)"))
        continue
    if r["outcome"] != "done":
        print("%-18s %-19s %s: %s" % (path, label, r["outcome"], r.get("reason", "")))
        continue
    second = r["topk"][1] if len(r["topk"]) > 1 else {"label": "", "prob": 0}
    hit = r["label"] == label
    ok += hit
    print("%-18s %-19s %-19s %6.3f  %-25s %8.1f %s" % (
        path, label, r["label"], r["prob"], "%s %.2f" % (second["label"], second["prob"]),
        r["timings_ms"]["total"], "" if hit else "  <- wrong"))
print("-" * 102)
done = sum(1 for r in recs.values() if r["outcome"] == "done")
print("%d/%d classified, %d/%d top-1 correct; model %s" % (done, n, ok, done, next(
    iter(recs.values()))["model"]["sha256"][:16] if recs else "-"))
time.sleep(2)
print("results returned to the stand-in PACS (%s): %d SR files" % (pacs, len(os.listdir(pacs))))
EOF

say "usviewd keeps running (pid $DPID); Ctrl-C stops it"
echo "   send:    storescu -aec USVIEW 127.0.0.1 $PORT FILE..."
echo "   metrics: curl -s http://127.0.0.1:$HTTP/metrics ; health: curl -s http://127.0.0.1:$HTTP/healthz"
echo "   spool:   $DEMO/spool (results.jsonl), log: $DEMO/usviewd.log"
if [ "${USV_DEMO_EXIT:-0}" = 1 ]; then
	exit 0
fi
wait "$DPID"
