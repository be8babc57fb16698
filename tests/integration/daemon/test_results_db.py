"""usviewd with results.backend: postgresql against a private PostgreSQL
cluster (initdb in a temporary folder, loopback only; pgcluster.py).

Two nodes, "a" and "b", each with its own spool, share one database; a
DCMTK storescp takes their SRs and study SRs. One QA protocol, "renal"
(match RENAL, two kidney views required). Checked:
  1. schema: usv_schema holds version 1, the tables exist;
  2. studies S1 (Study Description "RENAL US", 4 instances) and S2 (no
     description, 3) sent to node a: every instance line of a's
     results.jsonl is in usv_log exactly once and usv_instance has one
     row per SOP Instance UID; each study has one record (revision 1),
     equal to what the test computes from results.jsonl itself (views
     present = counts of the most probable class, missing = the
     protocol's required views not present, protocol "renal" for S1 and
     "default" for S2, instances); the lines' "protocol" key; the study
     SR named by the record's outputs is at storescp;
  3. two more instances of S1 sent to node b: exactly one revision 2
     (written by either node), counting all 6 instances, and no row
     twice for a (study, revision), nor a usv_log study line twice;
  4. the database stopped: node a still stores (storescu succeeds), its
     /metrics says usview_results_db_up 0 and a backlog > 0; the
     database started again: up 1, backlog 0, S3's record written; then
     lines that wait while results.jsonl is rotated (moved to
     results.jsonl.1, a new file started, as spool.index_max_mb does):
     the rotated file is finished, then the new one, each line once;
  5. node a SIGKILLed right after a send and restarted: no usv_log line
     twice, every line of a's results.jsonl copied;
  6. /qa on node a (http.qa) reads the database: b's instances and every
     study are on it;
  7. a schema version newer than usviewd's (99): node a logs the refusal
     with what to do, reports up 0, writes nothing, and still stores;
     at version 1 (an older database) it migrates to 2 and catches up.

usage: test_results_db.py MAKE_MODEL
"""

import json
import os
import re
import subprocess
import sys
import time

import pydicom
import usvtest

from daemonlib import Usviewd, make_us, parse_prometheus, sample
from storescp import StoreSCP

ck = usvtest.Check("results_db")
tmp = usvtest.tempdir("usv-resdb-")
model = os.path.join(tmp, "tiny.model")
subprocess.run([sys.argv[1], model], check=True)

from pgcluster import PgCluster  # noqa: E402

pg = PgCluster(tmp)  # exits 77 without the PostgreSQL server
pacs = StoreSCP(os.path.join(tmp, "pacs")).start()
PROTOCOLS = [{"name": "renal", "match": ["RENAL"],
              "required_views": ["kidney_left_long", "kidney_right_long"]}]
VIEWS11 = ["liver_left_long", "liver_left_trans", "liver_right_long", "liver_right_trans",
           "spleen", "pancreas", "kidney_left_long", "kidney_left_trans", "kidney_right_long",
           "kidney_right_trans", "gallbladder"]


def eq(msg, got, want):
    ck(got == want, "%s: got %r, want %r" % (msg, got, want))


def true(msg, v):
    ck(bool(v), msg)


def node(name):
    return Usviewd(tmp, model, name="node-" + name,
                   destinations=[{"name": "pacs", "ae_title": "STORESCP", "host": "127.0.0.1",
                                  "port": pacs.port, "send": ["sr", "study_sr"],
                                  "backoff_initial_s": 1, "backoff_max_s": 2}],
                   extra={"results": {"backend": "postgresql", "dsn": pg.dsn, "node": name},
                          "qa": {"study_quiet_s": 2}, "protocols": PROTOCOLS,
                          "http": {"qa": True}})


def send(d, files):
    r = subprocess.run(["storescu", "-aec", "USVIEW", "127.0.0.1", str(d.port)] + files,
                       capture_output=True, text=True, timeout=60)
    return r.returncode == 0


seq = [0]


def make_study(uid, n, description=None):
    files = []
    for _ in range(n):
        seq[0] += 1
        p = os.path.join(tmp, "in-%d.dcm" % seq[0])
        make_us(p, study_uid=uid, seed=seq[0])
        if description:
            ds = pydicom.dcmread(p)
            ds.StudyDescription = description
            ds.save_as(p)
        files.append(p)
    return files


def metrics(d):
    st, _, body = d.http("/metrics")
    return parse_prometheus(body)[1] if st == 200 else []


def metric(d, name):
    return sample(metrics(d), name)


def wait_for(pred, timeout=60, step=0.3):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return None


def jsonl_lines(d):
    """The instance lines of d's results.jsonl, as written."""
    path = os.path.join(d.spool, "results.jsonl")
    out = []
    with open(path) as f:
        for line in f:
            if line.endswith("\n") and '"kind":"study"' not in line:
                out.append(line[:-1])
    return out


def records():
    """{study: {revision: record}} and the raw row count per (study, revision)."""
    rows = pg.psql("SELECT study_uid, revision, line FROM usv_study_record")
    out = {}
    for uid, rev, line in rows:
        out.setdefault(uid, {})[int(rev)] = json.loads(line)
    return out


def expected(lines, study):
    """The record the test expects from instance lines (last report wins)."""
    inst = {}
    for line in lines:
        o = json.loads(line)
        if o.get("study_uid") == study:
            inst[o["sop_instance_uid"]] = o
    views = {}
    protos = set()
    for o in inst.values():
        if o.get("protocol"):
            protos.add(o["protocol"])
        if o["outcome"] != "done":
            continue
        lab = "uncertain" if o.get("uncertain") else (o["topk"][0]["label"] if o.get("topk")
                                                       else o["label"])
        views[lab] = views.get(lab, 0) + 1
    proto = "renal" if "renal" in protos else "default"
    req = PROTOCOLS[0]["required_views"] if proto == "renal" else VIEWS11
    missing = [v for v in req if v not in views]
    return {"protocol": proto, "views_present": views, "missing": missing,
            "instances": len(inst)}


a = node("a").start(env_extra=pg.env)
b = node("b").start(env_extra=pg.env)

# 1. schema
true("a and b connected", wait_for(lambda: metric(a, "usview_results_db_up") == 1 and
                                   metric(b, "usview_results_db_up") == 1, 30))
ver = pg.psql("SELECT version FROM usv_schema")
eq("schema version", [r[0] for r in ver], ["2"])
tabs = {r[0] for r in pg.psql("SELECT tablename FROM pg_tables WHERE tablename LIKE 'usv_%'")}
eq("tables", sorted(tabs), ["usv_instance", "usv_log", "usv_node", "usv_schema", "usv_study",
                               "usv_study_record"])
eq("both nodes' heartbeat", sorted(r[0] for r in pg.psql("SELECT node FROM usv_node")),
   ["a", "b"])

# 2. two studies on node a
S1, S2, S3 = "1.2.826.0.1.3680043.10.1001", "1.2.826.0.1.3680043.10.1002", \
    "1.2.826.0.1.3680043.10.1003"
true("send S1+S2 to a", send(a, make_study(S1, 4, "RENAL US") + make_study(S2, 3)))
true("a idle", a.wait_idle(60, outbox=False))
got = wait_for(lambda: (lambda r: r if S1 in r and S2 in r else None)(records()), 40)
true("records of S1 and S2 written", got is not None)
lines_a = jsonl_lines(a)
eq("a wrote 7 instance lines", len(lines_a), 7)
true("lines name the protocol",
        all(json.loads(l).get("protocol") == ("renal" if S1 in l else None) for l in lines_a))
log_rows = pg.psql("SELECT node, line FROM usv_log WHERE kind = 'instance'")
eq("every line of a in usv_log once",
      sorted(l for n, l in log_rows if n == "a"), sorted(lines_a))
eq("usv_instance rows", int(pg.psql("SELECT count(*) FROM usv_instance")[0][0]), 7)
for uid in (S1, S2):
    rec = (got or {}).get(uid, {}).get(1)
    exp = expected(lines_a, uid)
    true("%s revision 1 present" % uid[-4:], rec is not None)
    if rec:
        eq("%s record" % uid[-4:],
              {k: rec[k] for k in ("protocol", "views_present", "missing", "instances")}, exp)
true("study SRs at the PACS",
        wait_for(lambda: all(any(o["kind"] == "study_sr" and o["sop_instance_uid"] in
                                 pacs.sop_instance_uids() for o in r[1]["outputs"])
                             for u, r in records().items() if u in (S1, S2)), 30))

# 3. S1 continued on node b: one revision 2 over both nodes' instances
true("send 2 of S1 to b", send(b, make_study(S1, 2, "RENAL US")))
true("revision 2 of S1",
        wait_for(lambda: 2 in records().get(S1, {}), 40))
rec2 = records().get(S1, {}).get(2)
eq("S1 revision 2 counts", rec2 and rec2["instances"], 6)
eq("S1 revision 2 = lines of both nodes",
      rec2 and {k: rec2[k] for k in ("protocol", "views_present", "missing", "instances")},
      expected(jsonl_lines(a) + jsonl_lines(b), S1))
n_rec = int(pg.psql("SELECT count(*) FROM usv_study_record")[0][0])
eq("one usv_log study line per record",
   pg.psql("SELECT count(*), count(DISTINCT (study_uid, line::json->>'revision')) "
           "FROM usv_log WHERE kind = 'study'")[0], [str(n_rec), str(n_rec)])

# 4. database down
pg.kill()
true("a stores with the database down", send(a, make_study(S3, 3)))
true("a idle (db down)", a.wait_idle(60, outbox=False))
down = wait_for(lambda: metric(a, "usview_results_db_up") == 0 and
                (metric(a, "usview_results_db_backlog_bytes") or 0) > 0, 30)
true("metrics: up 0 and a backlog while down", down)
true("log names the database error",
        re.search(r"results database: .*results wait in results.jsonl", a.log()) is not None)
pg.start()
true("caught up: up 1, backlog 0",
        wait_for(lambda: metric(a, "usview_results_db_up") == 1 and
                 metric(a, "usview_results_db_backlog_bytes") == 0, 60))
true("S3 record after the outage", wait_for(lambda: 1 in records().get(S3, {}), 40))

# 4b. a rotation while lines wait: results.jsonl moved to results.jsonl.1
# (what spool.index_max_mb does: the old inode keeps its name .1) with
# lines not yet copied, then new lines in a new results.jsonl
pg.kill()
S6, S7 = "1.2.826.0.1.3680043.10.1006", "1.2.826.0.1.3680043.10.1007"
true("a stores S6 with the database down", send(a, make_study(S6, 3)))
true("a idle (S6)", a.wait_idle(60, outbox=False))
eq("a stops (S6)", a.stop(), 0)
cur = os.path.join(a.spool, "results.jsonl")
os.rename(cur, cur + ".1")
open(cur, "w").close()
pg.start()
a.start(env_extra=pg.env)
true("a stores S7 after the rotation", send(a, make_study(S7, 2)))
true("a idle (S7)", a.wait_idle(60, outbox=False))


def copied_a():
    mine = sorted(l for n, l in pg.psql("SELECT node, line FROM usv_log "
                                        "WHERE kind = 'instance'") if n == "a")
    with open(cur + ".1") as f:
        old = [l[:-1] for l in f if l.endswith("\n") and '"kind":"study"' not in l]
    return mine == sorted(old + jsonl_lines(a))


true("the rotated file finished, then the new one", wait_for(copied_a, 40))
true("S6 and S7 records", wait_for(lambda: 1 in records().get(S6, {}) and
                                   1 in records().get(S7, {}), 40))
eq("backlog 0 after the rotation", wait_for(
    lambda: metric(a, "usview_results_db_backlog_bytes") == 0, 20), True)

# 5. SIGKILL during copying
S4 = "1.2.826.0.1.3680043.10.1004"
send(a, make_study(S4, 5))
a.kill()
a.start(env_extra=pg.env)
true("a idle after restart", a.wait_idle(60, outbox=False))
true("every line of a copied after the kill", wait_for(copied_a, 40))
dup = pg.psql("SELECT count(*) - count(DISTINCT (node, line)) FROM usv_log")
eq("no usv_log line twice", dup[0][0], "0")

# 6. the QA page reads the database
st, _, body = a.http("/qa")
eq("/qa status", st, 200)
true("/qa from the database", "indexed from the results database" in body)
sops = int(pg.psql("SELECT count(*) FROM usv_instance")[0][0])
m = re.search(r"(\d+) instances in (\d+) studies", body)
nst = int(pg.psql("SELECT count(DISTINCT study_uid) FROM usv_instance")[0][0])
eq("studies so far", nst, 6)
eq("/qa counts every node's instances and studies",
   m and (int(m.group(1)), int(m.group(2))), (sops, nst))

# 7. a newer schema
pg.psql("UPDATE usv_schema SET version = 99")
a.stop()
a.start(env_extra=pg.env)
true("refusal logged", wait_for(lambda: "newer than this usviewd" in a.log(), 20))
S5 = "1.2.826.0.1.3680043.10.1005"
true("a stores while refusing the schema", send(a, make_study(S5, 2)))
time.sleep(3)
eq("up 0 with a newer schema", metric(a, "usview_results_db_up"), 0)
eq("nothing of S5 written",
      pg.psql("SELECT count(*) FROM usv_log WHERE study_uid = '%s'" % S5)[0][0], "0")
pg.psql("UPDATE usv_schema SET version = 1")  # an older database: migrated to 2
a.stop()
a.start(env_extra=pg.env)
true("migrated from version 1 to 2",
     wait_for(lambda: pg.psql("SELECT version FROM usv_schema")[0][0] == "2", 30))
true("S5 copied once the schema is current",
        wait_for(lambda: pg.psql("SELECT count(*) FROM usv_log WHERE study_uid = '%s' AND "
                                 "kind = 'instance'" % S5)[0][0] == "2", 40))

for d in (a, b):
    eq("%s stops cleanly" % d.name, d.stop(), 0)
pacs.stop()
pg.stop()
ck.done()
