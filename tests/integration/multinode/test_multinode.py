"""Three usviewd nodes behind HAProxy sharing one PostgreSQL results database.

Everything runs on loopback and is started by the test: a private
PostgreSQL cluster (pgcluster.py; role "usview", password in a PGPASSFILE),
three usviewd nodes (tiny model, 1 worker each, listen.proxy_protocol_from
[127.0.0.1], results.backend postgresql with node names node1..node3,
qa.study_quiet_s 4, a destination "pacs" with send: [sr, study_sr]),
HAProxy in TCP mode (configuration generated from
packaging/haproxy/usview.cfg as in test_haproxy.py: send-proxy-v2,
leastconn, /healthz checks) and the PACS: DCMTK storescp --fork, one file
per SOP Instance UID.

Data: USV_MULTINODE_INSTANCES (default 2000) US instances made with
daemonlib.make_us (varied sizes and patterns), in studies of 20, a fifth
of the studies per round. In each of the 5 rounds 8 clients send in
parallel through HAProxy, each in consecutive storescu runs (associations)
of 10 instances; each study's 20 instances are spread over the 8 clients
(instance j of study s goes to client (s + j) mod 8), so that one study
lands on several nodes. The last instance of 5 studies of round 1 is held
back and sent in round 5: those studies get one more revision, computed
by whichever node gets there first.
  round 1: undisturbed;
  round 2: node1 is SIGKILLed while it has associations in progress and
           restarted;
  round 3: node2 is drained (SIGTERM, exit 0 awaited) and restarted; no
           storescu run may fail;
  round 4: the database is taken down (immediate shutdown, as in a crash)
           for 10 s: the nodes keep acknowledging C-STOREs (no storescu run
           may fail), /metrics shows usview_results_db_up 0 and a growing
           usview_results_db_backlog_bytes, then up 1 and backlog 0 once
           the database is back;
  round 5: undisturbed.
Acknowledged instances: storescu runs with -v; an instance counts as
acknowledged when its "Sending file: PATH" line is followed by "Received
Store Response (Success)". Whatever a run did not get a success status for
(the association was cut by the SIGKILL) is sent again in a new storescu
run through HAProxy, until every instance is acknowledged (at most 20
tries each). An instance the killed node stored without answering may
thus be classified by two nodes: its SR UID is derived from the instance,
so the PACS still holds one SR for it.

After the rounds the test waits until every node's incoming/, active/ and
outboxes are empty, every backlog is 0 and every study in usv_study has
its record written, then checks:
  - the PACS holds exactly one instance SR per acknowledged instance (SRs
    whose evidence references that SOP Instance UID) and no SR for
    anything else;
  - usv_instance has one row per acknowledged instance and nothing else;
    its label is the view coded in the instance's SR;
  - the studies spread over several nodes, and the last round reached
    all three nodes (the killed and the drained one are back in service);
  - each study has revisions 1..n in usv_study_record, one row each
    (study, revision); the current record (highest revision) has
    views_present / instances equal to the counts of the predicted views
    in the PACS SRs of the study's instances (an independent reference);
    the studies with a late instance have a revision counting 19
    instances before the current one; usv_study holds each study once,
    with the current revision and written_seq = seq;
  - usv_log holds exactly one line of kind study per (study, revision),
    the same text as the record's line;
  - each node's results.jsonl instance lines are all in usv_log under
    that node's name, and results.jsonl holds no study lines;
  - the PACS holds the study SR of each study's current revision (the
    record's output UID, root concept STUDYQA, its study, "Record
    revision" = the revision);
  - each node's QA page (/qa), at its first request after the outage,
    says that it indexed every acknowledged instance and every study from
    the results database (the connection the restarted server dropped is
    replaced within that request).
Timings (instances/s per round and overall) and the checked counts are
printed.

usage: test_multinode.py MAKE_MODEL
"""

import collections
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import daemonlib
import usvtest
from haproxylib import sample_config
from daemonlib import Usviewd, make_us, parse_prometheus, sample
from pgcluster import PgCluster

import pydicom

ck = usvtest.Check("multinode_pg")
T0 = time.monotonic()
for tool in ("storescu", "storescp"):
    if not shutil.which(tool):
        print("%s not installed (dcmtk)" % tool)
        sys.exit(77)
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
if not os.path.exists(HAPROXY):
    print("haproxy not installed (scripts/install-deps.sh)")
    sys.exit(77)
SRC = os.environ.get("USV_SOURCE_DIR",
                     os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))

NINST = int(os.environ.get("USV_MULTINODE_INSTANCES", "2000"))
PER_STUDY = 20
NASSOC = 8
NROUNDS = 5
QUIET_S = 4
OUTAGE_S = 10.0
NODES = 3
RUN_FILES = 10      # instances per storescu run (association)
NLATE = 5           # studies of round 1 whose last instance comes in round 5
if NINST < NROUNDS * PER_STUDY or NINST % PER_STUDY:
    print("USV_MULTINODE_INSTANCES must be a multiple of %d, at least %d"
          % (PER_STUDY, NROUNDS * PER_STUDY))
    sys.exit(2)

tmp = usvtest.tempdir("usv-multinode-")
model = os.path.join(tmp, "tiny.model")
# seed 3: the tiny model's answers on these images spread over several views
subprocess.run([sys.argv[1], model, "3"], check=True)
pg = PgCluster(tmp)  # exits 77 without the PostgreSQL server


def wait_for(cond, timeout, step=0.1):
    end = time.monotonic() + timeout
    while True:
        v = cond()
        if v or time.monotonic() > end:
            return v
        time.sleep(step)


def walk(seq):
    for it in seq:
        yield it
        if "ContentSequence" in it:
            yield from walk(it.ContentSequence)


CODE_TO_LABEL = {daemonlib.view_code(v): v for v in (
    "liver_left_long", "liver_left_trans", "liver_right_long", "liver_right_trans", "spleen",
    "pancreas", "kidney_left_long", "kidney_left_trans", "kidney_right_long",
    "kidney_right_trans", "gallbladder")}

# ---- the studies --------------------------------------------------------------------
t = time.monotonic()
data = os.path.join(tmp, "data")
os.makedirs(data)
nstudies = NINST // PER_STUDY
studies = []        # [(study uid, [path, ...])]
info = {}           # path -> (sop uid, study uid)
for s in range(nstudies):
    study = usvtest.derive_uid("usv-multinode", s)
    series = usvtest.derive_uid("usv-multinode", s, "series")
    paths = []
    for j in range(PER_STUDY):
        k = s * PER_STUDY + j
        p = os.path.join(data, "s%03d-%02d.dcm" % (s, j))
        # varied sizes and patterns so that the tiny model predicts several views
        sop = make_us(p, sop_uid=usvtest.derive_uid("usv-multinode", s, j), study_uid=study,
                      series_uid=series, rows=48 + 16 * (k % 4), cols=64 + 16 * (k % 3),
                      seed=k % 97)
        info[p] = (sop, study)
        paths.append(p)
    studies.append((study, paths))
study_uids = {s for s, _ in studies}


def round_studies(rnd):
    per = nstudies // NROUNDS
    return range(rnd * per, (rnd + 1) * per if rnd < NROUNDS - 1 else nstudies)


late = {studies[s][1][-1] for s in list(round_studies(0))[:NLATE]}
late_studies = {info[p][1] for p in late}
round_of = {info[p][0]: (NROUNDS - 1 if p in late else rnd)
            for rnd in range(NROUNDS) for s in round_studies(rnd) for p in studies[s][1]}
print("%d instances in %d studies made in %.1f s" % (NINST, nstudies, time.monotonic() - t),
      flush=True)

# ---- the PACS, the nodes, HAProxy ---------------------------------------------------
pacs_dir = os.path.join(tmp, "pacs")
os.makedirs(pacs_dir)
pacs_port = usvtest.free_port()
pacs = usvtest.Proc(["storescp", "--fork", "-aet", "PACS", "-od", pacs_dir, str(pacs_port)],
                    log_path=os.path.join(tmp, "pacs.log"))
if not usvtest.wait_port(pacs_port, 10, pacs.p):
    ck(False, "storescp did not start: " + pacs.log()[-1000:])
    ck.done()
dest = {"name": "pacs", "ae_title": "PACS", "host": "127.0.0.1", "port": pacs_port,
        "send": ["sr", "study_sr"], "backoff_initial_s": 1, "backoff_max_s": 2,
        "max_attempts": 1000}
nodes = []
for k in range(1, NODES + 1):
    n = Usviewd(tmp, model, destinations=[dest], name="node%d" % k, extra={
        "listen": {"proxy_protocol_from": ["127.0.0.1"], "drain_timeout_s": 30,
                   "dimse_timeout": 30},
        "model": {"workers": 1},
        "qa": {"study_quiet_s": QUIET_S},
        "http": {"qa": True},
        "results": {"backend": "postgresql", "dsn": pg.dsn, "node": "node%d" % k}})
    nodes.append(n.start(env_extra=pg.env))
n1, n2, n3 = nodes

hp_port = usvtest.free_port()
cfg_text = sample_config(SRC, hp_port, nodes)
ck("send-proxy-v2" in cfg_text and "option httpchk GET /healthz" in cfg_text,
   "the HAProxy sample has send-proxy-v2 and the /healthz check")
hp_cfg = os.path.join(tmp, "haproxy.cfg")
with open(hp_cfg, "w") as f:
    f.write(cfg_text)
r = subprocess.run([HAPROXY, "-c", "-f", hp_cfg], capture_output=True, text=True)
ck(r.returncode == 0, "generated HAProxy config valid: %s" % (r.stdout + r.stderr)[-800:])
hp = usvtest.Proc([HAPROXY, "-db", "-f", hp_cfg], log_path=os.path.join(tmp, "haproxy.log"))
ck(usvtest.wait_port(hp_port, 10, proc=hp.p), "HAProxy listens")
time.sleep(1.0)  # first checks (rise 2, 300 ms) mark the nodes up
print("cluster up in %.1f s (PostgreSQL %s, port %d)" % (time.monotonic() - T0, pg.version,
                                                        pg.port), flush=True)


def metric(n, name):
    try:
        code, _, text = n.http("/metrics")
    except OSError:
        return None
    if code != 200:
        return None
    return sample(parse_prometheus(text)[1], name)


# ---- sending ------------------------------------------------------------------------
acked = {}            # path -> monotonic time of its success status
lock = threading.Lock()
runs = collections.Counter()   # "ok" / "failed" storescu runs per round
OK_RE = re.compile(r"Received Store Response \(Success")


def storescu(paths, timeout=120):
    """One association through HAProxy. Each instance answered with success
    is entered in acked as the answer arrives (storescu -v is read while it
    runs); returns (exit status, paths answered with success)."""
    p = subprocess.Popen(["storescu", "-v", "-aet", "MODALITY", "-aec", "USVIEW", "-to", "5",
                          "-ta", "5", "-td", "30", "127.0.0.1", str(hp_port)] + list(paths),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    killer = threading.Timer(timeout, p.kill)
    killer.start()
    ok, current = [], None
    for raw in p.stdout:
        line = raw.decode("utf-8", "replace")
        if "Sending file: " in line:
            current = line.split("Sending file: ", 1)[1].strip()
        elif OK_RE.search(line) and current:
            ok.append(current)
            with lock:
                acked.setdefault(current, time.monotonic())
            current = None
    rc = p.wait()
    killer.cancel()
    return rc, ok


def send_assoc(rnd, paths):
    """One client: its instances in consecutive associations of RUN_FILES."""
    for i in range(0, len(paths), RUN_FILES):
        todo = paths[i:i + RUN_FILES]
        for attempt in range(20):
            rc, ok = storescu(todo)
            with lock:
                runs[(rnd, "ok" if rc == 0 and len(ok) == len(todo) else "failed")] += 1
            done = set(ok)
            todo = [p for p in todo if p not in done]
            if not todo:
                break
            time.sleep(0.5)


def round_paths(rnd):
    assoc = [[] for _ in range(NASSOC)]
    for s in round_studies(rnd):
        for j, p in enumerate(studies[s][1]):
            if p in late and rnd == 0:
                continue
            assoc[(s + j) % NASSOC].append(p)
    if rnd == NROUNDS - 1:
        for k, p in enumerate(sorted(late)):
            assoc[k % NASSOC].append(p)
    return assoc


def start_round(rnd):
    ths = [threading.Thread(target=send_assoc, args=(rnd, a)) for a in round_paths(rnd)]
    for th in ths:
        th.start()
    return ths


def acked_count():
    with lock:
        return len(acked)


timings = []


def run_round(rnd, during=None):
    t = time.monotonic()
    before = acked_count()
    ths = start_round(rnd)
    disturb = None
    if during:
        def guarded():
            try:
                during(before)
            except Exception as e:  # noqa: BLE001 - reported as a failed check
                ck(False, "round %d: %s: %r" % (rnd + 1, during.__name__, e))
        disturb = threading.Thread(target=guarded)
        disturb.start()
    for th in ths:
        th.join()
    dt = time.monotonic() - t  # until the last client is done
    if disturb:
        disturb.join()
    n = acked_count() - before
    timings.append((rnd + 1, n, dt))
    print("round %d: %d instances acknowledged in %.1f s (%.0f/s), storescu runs ok %d, "
          "failed %d" % (rnd + 1, n, dt, n / dt, runs[(rnd, "ok")], runs[(rnd, "failed")]),
          flush=True)


per_round = NINST // NROUNDS


def kill_node1(before):
    ck(wait_for(lambda: acked_count() - before >= per_round // 4
                and (metric(n1, "usview_associations_active") or 0) >= 1, 60, 0.05),
       "node1 has associations in progress")
    n1.kill()
    print("node1 SIGKILLed at %d acknowledged" % (acked_count() - before), flush=True)
    time.sleep(1.0)
    n1.start(env_extra=pg.env)


def drain_node2(before):
    ck(wait_for(lambda: acked_count() - before >= per_round // 4
                and (metric(n2, "usview_associations_active") or 0) >= 1, 60, 0.05),
       "node2 has associations in progress")
    os.kill(n2.proc.pid, signal.SIGTERM)
    try:
        rc = n2.proc.wait(timeout=45)
    except subprocess.TimeoutExpired:
        rc = None
    ck(rc == 0, "node2 exits 0 after draining (%r)" % rc)
    ck("draining: done" in n2.log(), "node2 logs the end of the drain")
    print("node2 drained at %d acknowledged" % (acked_count() - before), flush=True)
    n2.start(env_extra=pg.env)


outage = {}


def db_outage(before):
    wait_for(lambda: acked_count() - before >= per_round // 8, 60, 0.05)
    t_down = time.monotonic()
    pg.kill()
    n_down = acked_count()
    seen_down, backlog = set(), collections.Counter()
    while time.monotonic() - t_down < OUTAGE_S:
        for n in nodes:
            if metric(n, "usview_results_db_up") == 0:
                seen_down.add(n.name)
            b = metric(n, "usview_results_db_backlog_bytes") or 0
            backlog[n.name] = max(backlog[n.name], b)
        time.sleep(0.2)
    outage["acked_during"] = acked_count() - n_down
    outage["seen_down"] = seen_down
    outage["backlog"] = backlog
    pg.start()
    t_up = time.monotonic()
    up = wait_for(lambda: all(metric(n, "usview_results_db_up") == 1 for n in nodes), 60, 0.2)
    outage["reconnect_s"] = time.monotonic() - t_up
    outage["up"] = up
    print("database down %.1f s: %d instances acknowledged meanwhile; max backlog %s; "
          "all nodes up again %.1f s after the restart" % (
              t_up - t_down, outage["acked_during"], dict(backlog), outage["reconnect_s"]),
          flush=True)


t_send = time.monotonic()
run_round(0)
run_round(1, kill_node1)
run_round(2, drain_node2)
ck(runs[(2, "failed")] == 0, "no storescu run failed while node2 drained (%d failed)"
   % runs[(2, "failed")])
run_round(3, db_outage)
ck(runs[(3, "failed")] == 0, "no storescu run failed while the database was down (%d failed)"
   % runs[(3, "failed")])
ck(outage.get("acked_during", 0) > 0, "instances acknowledged while the database was down")
ck(outage.get("seen_down") == {n.name for n in nodes},
   "usview_results_db_up 0 on every node during the outage: %s" % sorted(outage.get("seen_down",
                                                                                    [])))
ck(max(outage.get("backlog", {0: 0}).values()) > 0,
   "usview_results_db_backlog_bytes grew during the outage: %s" % dict(outage.get("backlog", {})))
ck(outage.get("up"), "usview_results_db_up 1 on every node after the database came back")
run_round(4)
send_s = time.monotonic() - t_send
ck(len(acked) == NINST, "every instance acknowledged: %d of %d" % (len(acked), NINST))
print("sent: %d instances acknowledged in %.1f s (%.0f/s through HAProxy, disturbances "
      "included)" % (len(acked), send_s, len(acked) / send_s), flush=True)

# ---- quiet ------------------------------------------------------------------------
t = time.monotonic()


def quiet():
    for n in nodes:
        if not n.alive() or not n.wait_idle(0.01):
            return False
        if metric(n, "usview_results_db_backlog_bytes") != 0:
            return False
    rows = pg.psql("SELECT count(*), count(*) FILTER (WHERE written_seq IS NOT NULL AND "
                   "written_seq = seq) FROM usv_study")
    if not rows or int(rows[0][0]) < nstudies or rows[0][0] != rows[0][1]:
        return False
    # study SRs queued by the last records must have left the outboxes too
    time.sleep(0.5)
    return all(n.wait_idle(0.01) for n in nodes)


ok = wait_for(lambda: quiet() and quiet(), 180, 0.5)
ck(ok, "quiet within 180 s (backlogs empty, study records written)")
quiet_s = time.monotonic() - t
print("quiet %.1f s after the last round" % quiet_s, flush=True)
for n in nodes:
    ck(n.alive(), "%s running" % n.name)
    ck(metric(n, "usview_results_db_up") == 1, "%s: usview_results_db_up 1" % n.name)
    ck(metric(n, "usview_results_db_backlog_bytes") == 0, "%s: backlog 0" % n.name)

# ---- the PACS ---------------------------------------------------------------------
t = time.monotonic()
sop_of = {p: info[p][0] for p in acked}
acked_sops = set(sop_of.values())
study_of_sop = {info[p][0]: info[p][1] for p in info}
inst_srs = collections.defaultdict(set)   # instance -> SR SOP UIDs
sr_view = {}                              # instance -> predicted label (from its SR)
study_srs = {}                            # SR SOP UID -> (study, revision)
stray = []
for name in os.listdir(pacs_dir):
    ds = pydicom.dcmread(os.path.join(pacs_dir, name))
    if ds.SOPClassUID != daemonlib.SR_COMPREHENSIVE:
        stray.append((name, "not an SR"))
        continue
    root = ds.ConceptNameCodeSequence[0].CodeValue
    refs = [r.ReferencedSOPInstanceUID for st in ds.CurrentRequestedProcedureEvidenceSequence
            for se in st.ReferencedSeriesSequence for r in se.ReferencedSOPSequence]
    if root == "STUDYQA":
        rev = [it.MeasuredValueSequence[0].NumericValue for it in walk(ds.ContentSequence)
               if it.ValueType == "NUM" and it.ConceptNameCodeSequence[0].CodeMeaning
               == "Record revision"]
        study_srs[ds.SOPInstanceUID] = (ds.StudyInstanceUID, int(rev[0]) if rev else None)
        continue
    if len(refs) != 1 or refs[0] not in acked_sops:
        stray.append((name, refs))
        continue
    inst_srs[refs[0]].add(ds.SOPInstanceUID)
    ck(ds.StudyInstanceUID == study_of_sop[refs[0]], "instance SR %s in another study" % name)
    views = [it.ConceptCodeSequence[0].CodeValue for it in walk(ds.ContentSequence)
             if it.ValueType == "CODE" and it.ConceptNameCodeSequence[0].CodeValue == "111031"]
    if ck(len(views) >= 1 and views[0] in CODE_TO_LABEL, "SR %s: predicted view %r"
          % (name, views)):
        sr_view[refs[0]] = CODE_TO_LABEL[views[0]]
ck(not stray, "%d objects at the PACS that are no SR of a sent instance: %s"
   % (len(stray), stray[:5]))
missing_sr = sorted(acked_sops - set(inst_srs))
ck(not missing_sr, "%d acknowledged instances without an SR at the PACS: %s"
   % (len(missing_sr), missing_sr[:3]))
multi = {u: s for u, s in inst_srs.items() if len(s) != 1}
ck(not multi, "%d instances with more than one SR: %s" % (len(multi), list(multi.items())[:2]))
print("PACS: %d instance SRs, %d study SRs read in %.1f s; predicted views %s" % (
    sum(len(s) for s in inst_srs.values()), len(study_srs), time.monotonic() - t,
    dict(collections.Counter(sr_view.values()))), flush=True)

# ---- the database -----------------------------------------------------------------
inst_rows = pg.psql("SELECT sop_instance_uid, study_uid, node, label FROM usv_instance")
db_inst = {r[0]: r for r in inst_rows}
ck(len(inst_rows) == len(db_inst) == len(acked_sops) and set(db_inst) == acked_sops,
   "usv_instance: %d rows, %d acknowledged instances, %d not in it, %d extra" % (
       len(inst_rows), len(acked_sops), len(acked_sops - set(db_inst)),
       len(set(db_inst) - acked_sops)))
bad = [u for u, r in db_inst.items() if u in sr_view and r[3] != sr_view[u]]
ck(not bad, "%d usv_instance labels differ from the view in the instance's SR" % len(bad))
bad = [u for u, r in db_inst.items() if u in study_of_sop and r[1] != study_of_sop[u]]
ck(not bad, "%d usv_instance rows with the wrong study" % len(bad))
spread = collections.defaultdict(set)
for u, r in db_inst.items():
    spread[r[1]].add(r[2])
multi_node = sum(1 for s in spread.values() if len(s) >= 2)
ck(multi_node >= nstudies // 2, "studies whose instances were classified on several nodes: "
   "%d of %d" % (multi_node, nstudies))
per_node = collections.Counter(r[2] for r in inst_rows)
by_round = collections.defaultdict(collections.Counter)
for u, r in db_inst.items():
    if u in round_of:
        by_round[round_of[u] + 1][r[2]] += 1
print("instances classified per round and node: %s" % {
    k: dict(sorted(v.items())) for k, v in sorted(by_round.items())}, flush=True)
ck(all(by_round[NROUNDS][n.name] > 0 for n in nodes),
   "the last round reached every node (the killed and the drained one back in service): %r"
   % dict(by_round[NROUNDS]))
print("usv_instance: %d rows by node %s; %d of %d studies spread over several nodes" % (
    len(inst_rows), dict(per_node), multi_node, nstudies), flush=True)

rec_rows = pg.psql("SELECT study_uid, revision, node, line FROM usv_study_record "
                   "ORDER BY study_uid, revision")
recs = collections.defaultdict(list)
for study, rev, node, line in rec_rows:
    recs[study].append((int(rev), node, line))
ck(set(recs) == study_uids, "usv_study_record covers the %d studies (%d, %d unknown)" % (
    nstudies, len(set(recs) & study_uids), len(set(recs) - study_uids)))
dup = pg.psql("SELECT study_uid, revision, count(*) FROM usv_study_record "
              "GROUP BY study_uid, revision HAVING count(*) > 1")
ck(not dup, "one usv_study_record row per (study, revision): %s" % dup[:3])
log_rows = pg.psql("SELECT node, kind, study_uid, line FROM usv_log")
log_study = collections.Counter()
log_study_text = {}
for node, kind, study, line in log_rows:
    if kind == "study":
        o = json.loads(line)
        key = (o.get("study_uid"), o.get("revision"))
        log_study[key] += 1
        log_study_text[key] = line
rec_keys = {(s, r[0]) for s, lst in recs.items() for r in lst}
ck(set(log_study) == rec_keys, "usv_log study lines for exactly the recorded revisions "
   "(%d lines, %d records)" % (len(log_study), len(rec_keys)))
ck(all(c == 1 for c in log_study.values()), "one usv_log study line per revision: %s" % [
    k for k, c in log_study.items() if c != 1][:3])
nrev = collections.Counter()
wrote = collections.Counter()
for study, paths in studies:
    lst = recs.get(study, [])
    revs = [r[0] for r in lst]
    nrev[len(revs)] += 1
    if not ck(revs == list(range(1, len(revs) + 1)) and revs,
              "study %s revisions %r" % (study, revs)):
        continue
    for rev, node, line in lst:
        wrote[node] += 1
        ck(log_study_text.get((study, rev)) == line,
           "study %s revision %d: usv_log line differs from the record" % (study, rev))
    cur = json.loads(lst[-1][2])
    if study in late_studies:
        # a record once the study had been quiet without its last instance
        # (revision 1, unless a slow client split round 1), and one more (on
        # whichever node) once that instance arrived in round 5
        before_late = json.loads(lst[-2][2]) if len(lst) >= 2 else {}
        ck(len(revs) >= 2 and before_late.get("instances") == PER_STUDY - 1,
           "study %s with a late instance: revisions %r, the one before the last counts %r"
           % (study, revs, before_late.get("instances")))
    sops = {info[p][0] for p in paths if p in acked}
    want_views = dict(collections.Counter(sr_view[u] for u in sops if u in sr_view))
    ck(cur.get("study_uid") == study and cur.get("revision") == revs[-1],
       "study %s: record names %r revision %r" % (study, cur.get("study_uid"),
                                                  cur.get("revision")))
    ck(cur.get("instances") == len(sops) and cur.get("views_present") == want_views,
       "study %s revision %d: instances %r views %r; the PACS SRs say %d, %r" % (
           study, revs[-1], cur.get("instances"), cur.get("views_present"), len(sops),
           want_views))
    outs = [o for o in cur.get("outputs", []) if o.get("kind") == "study_sr"]
    uid = outs[0].get("sop_instance_uid") if len(outs) == 1 else None
    ck(uid is not None and study_srs.get(uid) == (study, revs[-1]),
       "study %s revision %d: study SR %s at the PACS: %r" % (study, revs[-1], uid,
                                                              study_srs.get(uid)))
st_rows = pg.psql("SELECT study_uid, revision, seq, written_seq FROM usv_study")
st = {r[0]: r for r in st_rows}
ck(len(st_rows) == len(st) == nstudies and set(st) == study_uids,
   "usv_study: %d rows for %d studies" % (len(st_rows), nstudies))
bad = [u for u, r in st.items() if u in recs and (int(r[1]) != recs[u][-1][0] or r[2] != r[3])]
ck(not bad, "%d usv_study rows whose revision is not the current record's or written_seq != seq"
   ": %s" % (len(bad), [st[u] for u in bad[:3]]))
rev_by_round = collections.defaultdict(collections.Counter)
for rnd in range(NROUNDS):
    for s in round_studies(rnd):
        rev_by_round[rnd + 1][len(recs.get(studies[s][0], []))] += 1
print("usv_study_record: %d rows; revisions per study %s (by round: %s); written by %s" % (
    len(rec_rows), dict(sorted(nrev.items())),
    {k: dict(sorted(v.items())) for k, v in sorted(rev_by_round.items())}, dict(wrote)),
    flush=True)

# ---- results.jsonl of each node against usv_log ------------------------------------
log_inst = collections.defaultdict(set)
for node, kind, study, line in log_rows:
    if kind == "instance":
        log_inst[node].add(line)
n_lines = 0
for n in nodes:
    lines, study_lines = [], 0
    for name in ("results.jsonl.1", "results.jsonl"):
        p = os.path.join(n.spool, name)
        if os.path.exists(p):
            with open(p) as f:
                for line in f:
                    if not line.endswith("\n"):
                        continue
                    line = line.rstrip("\n")
                    if json.loads(line).get("kind", "instance") == "study":
                        study_lines += 1
                    else:
                        lines.append(line)
    n_lines += len(lines)
    absent = [x for x in lines if x not in log_inst[n.name]]
    ck(lines and not absent, "%s: %d of %d results.jsonl lines not in usv_log" % (
        n.name, len(absent), len(lines)))
    ck(study_lines == 0, "%s: %d study lines in results.jsonl" % (n.name, study_lines))
ck(sum(len(v) for v in log_inst.values()) == n_lines,
   "usv_log holds %d instance lines, results.jsonl %d" % (
       sum(len(v) for v in log_inst.values()), n_lines))

# ---- the QA page of each node reads the database: everybody's instances
FOOT = re.compile(r"<footer>(\d+) instances in (\d+) studies indexed from ([^(]+?) \(")
want = (len(acked_sops), nstudies, "the results database")


def qa_footer(n):
    code, _, html = n.http("/qa")
    m = FOOT.search(html)
    if code != 200 or not m:
        return (code, html[-300:])
    return (int(m.group(1)), int(m.group(2)), m.group(3), "the last read failed" in html)


qa_pages = {}
for n in nodes:
    # the first request after the outage: a connection the restarted
    # server dropped is replaced at once, so the page is complete
    first = qa_footer(n)
    ck(first == want + (False,),
       "%s /qa, first request: %r, want %d instances in %d studies from the database" % (
           n.name, first, want[0], want[1]))
    qa_pages[n.name] = first[:2]
print("QA pages (instances, studies): %s" % qa_pages, flush=True)

print("checked: %d instances acknowledged, %d instance SRs, %d study SRs, %d usv_instance rows, "
      "%d usv_study_record rows, %d usv_log lines, %d results.jsonl lines" % (
          len(acked), sum(len(s) for s in inst_srs.values()), len(study_srs), len(inst_rows),
          len(rec_rows), len(log_rows), n_lines))
print("timings: " + "; ".join("round %d %.0f/s" % (r, n / dt) for r, n, dt in timings)
      + "; sending %.1f s, quiet after %.1f s, total %.1f s" % (send_s, quiet_s,
                                                                time.monotonic() - T0),
      flush=True)
hp.stop()
for n in nodes:
    rc = n.stop()
    ck(rc == 0, "%s exits 0 at the end (%r)" % (n.name, rc))
pg.stop()
if ck.failures:
    for n in nodes:
        print("---- %s log (tail)\n%s" % (n.name, n.log()[-3000:]))
    print("---- PostgreSQL log (tail)\n%s" % pg.log()[-2000:])
ck.done()
