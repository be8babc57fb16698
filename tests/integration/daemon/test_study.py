"""Per-study completeness in usviewd: study records in results.jsonl,
revisions, the study SR, and exactly one record per revision across
SIGKILL.

Studies are made from `usview phantom` images (one image per view) with
pydicom: a new Study Instance UID, a Study Description that selects a
protocol (or none: "default"), and the technologist's label in Image
Comments ("LT KIDNEY LONG" ...), deliberately wrong on some images; some
views are left out. They are sent with storescu to usviewd (tiny model,
qa.study_quiet_s 3600, then 2 by a SIGHUP reload: no record before it;
qa.labels on; model.min_confidence 0.33 so that some answers are
uncertain; a destination that takes study SRs: DCMTK storescp).

Part 1. For each study the record is compared with what is expected from
the test's own plan (protocol, its required views) and the per-instance
lines of results.jsonl (deduplicated on SOP Instance UID): views_present
= label counts of done instances ("uncertain" ones under "uncertain"),
missing = required views not present, disagreements = instances with
agrees false, uncertain, instances. The technologist labels read must be
the ones written, and each deliberately wrong one a disagreement unless
the model predicted that very class. One instance of a study is held back
and sent after its first record: revision 2 must follow, with it counted.
Every record's study SR arrives at storescp, has the SOP Instance UID the
record lists, passes dciodvfy with no error, and dsrdump shows each found
and each missing view under its heading.

Part 2. A second daemon: studies and late instances are sent while the
daemon is SIGKILLed at random moments (seeded; the seed is printed) and
restarted; also inside each commit of a record: USV_STUDY_COMMIT_DELAY_MS
holds each commit step 300 ms, the test waits until the study's state
file shows a pending revision and kills at a random moment of the next
0.5 s (before or after the line was appended). Afterwards every study
has exactly one record per revision, revisions 1..n without a gap, and
the last record counts every instance.

usage: test_study.py MAKE_MODEL [SEED]
"""

import collections
import csv
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import daemonlib
import usvtest
from daemonlib import Usviewd

import pydicom

ck = usvtest.Check("daemon_study")
seed = int(sys.argv[2]) if len(sys.argv) > 2 else int(time.time()) % 100000
print("seed", seed, flush=True)
rnd = random.Random(seed)
tmp = usvtest.tempdir("usv-d-study-")
model = os.path.join(tmp, "tiny.model")
subprocess.run([sys.argv[1], model, "5"], check=True)
SR_CLASS = daemonlib.SR_COMPREHENSIVE

VIEWS = ["liver_left_long", "liver_left_trans", "liver_right_long", "liver_right_trans",
         "spleen", "pancreas", "kidney_left_long", "kidney_left_trans", "kidney_right_long",
         "kidney_right_trans", "gallbladder"]
TYPED = {"liver_left_long": "LIVER LT LONG", "liver_left_trans": "LIVER LT TRANS",
         "liver_right_long": "LIVER RT LONG", "liver_right_trans": "LIVER RT TRANS",
         "spleen": "SPLEEN", "pancreas": "PANCREAS", "kidney_left_long": "LT KIDNEY LONG",
         "kidney_left_trans": "LT KIDNEY TRANS", "kidney_right_long": "RT KIDNEY LONG",
         "kidney_right_trans": "RT KIDNEY TRANS", "gallbladder": "GB"}
KIDNEY = ["kidney_left_long", "kidney_left_trans", "kidney_right_long", "kidney_right_trans"]
PROTOCOLS = [
    {"name": "renal", "match": ["renal", "KIDNEY"], "required_views": KIDNEY},
    {"name": "abdomen", "match": ["abdomen"], "required_views": VIEWS},
]

# ---- the studies ------------------------------------------------------------

NSTUDIES = 7
ph = os.path.join(tmp, "phantom")
subprocess.run([os.environ["USVIEW"], "phantom", "--out", ph, "--studies", str(NSTUDIES),
                "--manufacturer", "toshiba", "--seed", str(seed % 1000)], check=True,
               stdout=subprocess.DEVNULL)
by_study = collections.defaultdict(dict)  # phantom study -> view -> path
with open(os.path.join(ph, "labels.csv")) as f:
    for row in csv.DictReader(f):
        by_study[row["group"]][row["label"]] = os.path.join(ph, row["path"])
groups = sorted(by_study)


def make_study(idx, description, views, wrong, requested=""):
    """Copies the views of phantom study idx into a new study; wrong: views
    whose typed label names another view. Returns (study uid, {sop: info})."""
    study = usvtest.derive_uid("usv-study-test", seed, idx)
    out = os.path.join(tmp, "s%d" % idx)
    os.makedirs(out)
    inst = {}
    for k, v in enumerate(views):
        ds = pydicom.dcmread(by_study[groups[idx]][v])
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = usvtest.derive_uid("usv-study-test", seed, idx, "series")
        ds.StudyDescription = description
        if requested:
            ds.RequestedProcedureDescription = requested
        typed = v
        if v in wrong:
            typed = VIEWS[(VIEWS.index(v) + 3) % len(VIEWS)]
        ds.ImageComments = TYPED[typed]
        p = os.path.join(out, "%s.dcm" % v)
        ds.save_as(p)
        inst[ds.SOPInstanceUID] = {"path": p, "view": v, "typed": typed}
    return study, inst


def storescu(port, paths, retries=1):
    for attempt in range(retries):
        r = subprocess.run(["storescu", "-aet", "MODALITY", "-aec", "USVIEW", "-to", "5", "-ta",
                            "5", "-td", "10", "127.0.0.1", str(port)] + list(paths),
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if r.returncode == 0 and b"Store Failed" not in r.stderr:
            return True
        time.sleep(0.2)
    return False


def read_lines(spool):
    """Every complete line of results.jsonl.1 and results.jsonl, in order."""
    out = []
    for name in ("results.jsonl.1", "results.jsonl"):
        p = os.path.join(spool, name)
        if os.path.exists(p):
            with open(p) as f:
                for line in f:
                    if line.endswith("\n"):
                        out.append(json.loads(line))
    return out


def records(lines, study):
    return [o for o in lines if o.get("kind") == "study" and o.get("study_uid") == study]


def instance_lines(lines, study, only=None):
    """The last per-instance line of each SOP instance of the study."""
    last = {}
    for o in lines:
        if o.get("kind", "instance") == "instance" and o.get("study_uid") == study:
            if only is None or o["sop_instance_uid"] in only:
                last[o["sop_instance_uid"]] = o
    return last


def expected_record(inst_lines, protocol):
    required = VIEWS if protocol in ("default", "abdomen") else KIDNEY
    present = collections.Counter(o["label"] for o in inst_lines.values()
                                  if o["outcome"] == "done")
    return {
        "protocol": protocol,
        "views_present": dict(present),
        "missing": [v for v in required if v not in present],
        "disagreements": sum(1 for o in inst_lines.values()
                             if o["outcome"] == "done" and o.get("agrees") is False),
        "uncertain": sum(1 for o in inst_lines.values()
                         if o["outcome"] == "done" and o.get("uncertain") is True),
        "instances": len(inst_lines),
    }


def wait_for(pred, timeout, step=0.2):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


t_start = time.monotonic()
rcv = os.path.join(tmp, "received")
os.makedirs(rcv)
dport = usvtest.free_port()
scp = usvtest.Proc(["storescp", "-aet", "QA", "-od", rcv, str(dport)],
                   log_path=os.path.join(tmp, "storescp.log"))
ck(usvtest.wait_port(dport, 10, scp.p), "storescp did not start")
dest = {"name": "qa", "ae_title": "QA", "host": "127.0.0.1", "port": dport,
        "send": ["study_sr"], "backoff_initial_s": 1, "backoff_max_s": 2,
        "max_attempts": 100}
# min_confidence: about half of the tiny model's answers are uncertain
extra = {"qa": {"study_quiet_s": 2, "labels": True}, "protocols": PROTOCOLS,
         "model": {"min_confidence": 0.33}}

# ---- part 1 ---------------------------------------------------------------------

plans = {
    # abdomen protocol; pancreas and gallbladder left out; spleen sent late
    "A": make_study(0, "US ABDOMEN COMPLETE", [v for v in VIEWS
                                               if v not in ("pancreas", "gallbladder")],
                    wrong={"liver_left_trans", "kidney_right_long"}),
    # renal protocol through "Renal"; kidney_right_trans left out
    "B": make_study(1, "Renal ultrasound", ["kidney_left_long", "kidney_left_trans",
                                            "kidney_right_long", "liver_left_long"],
                    wrong={"kidney_left_trans"}),
    # no protocol matches: default (11 views)
    "C": make_study(2, "SYNTHETIC PHANTOM", ["spleen", "gallbladder", "pancreas",
                                             "liver_right_long"], wrong=set(),
                    requested="US follow-up"),
}
protocol_of = {"A": "abdomen", "B": "renal", "C": "default"}
late_sop = next(s for s, i in plans["A"][1].items() if i["view"] == "spleen")

# started with an hour of quiet: no record until a SIGHUP brings 2 s
extra["qa"]["study_quiet_s"] = 3600
d = Usviewd(tmp, model, destinations=[dest], extra=extra, http=False)
d.start()
nsent = 0
for key, (study, inst) in plans.items():
    paths = [i["path"] for s, i in inst.items() if s != late_sop]
    nsent += len(paths)
    ck(storescu(d.port, paths, retries=3), "study %s not stored" % key)
ck(wait_for(lambda: sum(1 for o in read_lines(d.spool) if o.get("kind") == "instance") >= nsent,
            30), "instances not classified")
time.sleep(1.0)
ck(not [o for o in read_lines(d.spool) if o.get("kind") == "study"],
   "a study record before the quiet period is over")
d.cfg["qa"]["study_quiet_s"] = 2
d.write_config()
os.kill(d.proc.pid, signal.SIGHUP)

first = wait_for(lambda: all(records(read_lines(d.spool), s) for s, _ in plans.values()), 40)
ck(first, "no study record for every study within 40 s:\n" + d.log()[-3000:])
lines = read_lines(d.spool)
rev1_a = records(lines, plans["A"][0])
ck(len(rev1_a) == 1 and rev1_a[0]["revision"] == 1, "study A: %r" % rev1_a)
# revision 1 of A counts everything but the late instance
if rev1_a:
    exp = expected_record(instance_lines(lines, plans["A"][0]), "abdomen")
    got = {k: rev1_a[0].get(k) for k in exp}
    ck(got == exp, "study A revision 1: %r, expected %r" % (got, exp))
    ck(rev1_a[0]["instances"] == len(plans["A"][1]) - 1, "study A revision 1 instances")

# the late instance: revision 2
ck(storescu(d.port, [plans["A"][1][late_sop]["path"]], retries=3), "late instance not stored")
ck(wait_for(lambda: len(records(read_lines(d.spool), plans["A"][0])) >= 2, 30),
   "no revision 2 of study A after the late instance")
ck(d.wait_idle(30), "outbox not empty (study SRs not delivered)")
time.sleep(0.5)
lines = read_lines(d.spool)

for key, (study, inst) in plans.items():
    recs = records(lines, study)
    nrev = 2 if key == "A" else 1
    ck([r["revision"] for r in recs] == list(range(1, nrev + 1)),
       "study %s revisions %r" % (key, [r["revision"] for r in recs]))
    if not recs:
        continue
    last = recs[-1]
    il = instance_lines(lines, study)
    ck(set(il) == set(inst), "study %s: instance lines for %d of %d instances" %
       (key, len(set(il) & set(inst)), len(inst)))
    exp = expected_record(il, protocol_of[key])
    got = {k: last.get(k) for k in exp}
    ck(got == exp, "study %s: %r, expected %r" % (key, got, exp))
    ck(last["station_name"] == il[next(iter(il))]["station_name"], "station_name")
    ck(last["study_date"] == il[next(iter(il))]["study_date"], "study_date")
    ck(re.fullmatch(r"[0-9a-f]{16}|", last["accession_hash"]) is not None, "accession_hash")
    # the technologist labels as typed; every wrong one a disagreement
    for sop, i in inst.items():
        o = il.get(sop)
        if not o:
            continue
        ck(o.get("technologist_label") == i["typed"],
           "study %s %s: technologist_label %r, typed %r" % (key, i["view"],
                                                             o.get("technologist_label"),
                                                             i["typed"]))
        if i["typed"] != i["view"] and o["outcome"] == "done" and o["label"] != i["typed"]:
            ck(o.get("agrees") is False, "study %s %s: a wrong label that agrees" %
               (key, i["view"]))
    # views the study lacks and the model never predicted are missing
    required = VIEWS if protocol_of[key] != "renal" else KIDNEY
    predicted = {o["label"] for o in il.values()}
    sent_views = {i["view"] for i in inst.values()}
    for v in required:
        if v not in sent_views and v not in predicted:
            ck(v in last["missing"], "study %s: %s neither sent nor found, not missing" %
               (key, v))
    ck(all(len(r["outputs"]) == 1 and r["outputs"][0]["destination"] == "qa" and
           r["outputs"][0]["kind"] == "study_sr" for r in recs),
       "study %s outputs: %r" % (key, [r["outputs"] for r in recs]))

unc = sum(records(lines, s)[-1]["uncertain"] for s, _ in plans.values() if records(lines, s))
total = sum(len(i) for _, i in plans.values())
ck(0 < unc < total, "uncertain instances: %d of %d (the path is not exercised)" % (unc, total))

# the study SRs at storescp
srs = {}
for name in os.listdir(rcv):
    p = os.path.join(rcv, name)
    ds = pydicom.dcmread(p)
    ck(ds.SOPClassUID == SR_CLASS, "%s: not a Comprehensive SR" % name)
    srs[ds.SOPInstanceUID] = (p, ds)
all_recs = [r for s, _ in plans.values() for r in records(lines, s)]
ck(len(srs) == len(all_recs), "%d study SRs received for %d records" % (len(srs), len(all_recs)))
for r in all_recs:
    uid = r["outputs"][0]["sop_instance_uid"] if r["outputs"] else None
    if not ck(uid in srs, "study SR %s of %s revision %d not received" % (uid, r["study_uid"],
                                                                        r["revision"])):
        continue
    p, ds = srs[uid]
    ck(ds.StudyInstanceUID == r["study_uid"], "study SR in another study")
    v = subprocess.run(["dciodvfy", p], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    errors = [x for x in v.stdout.decode("utf-8", "replace").splitlines()
              if x.startswith("Error")]
    ck(not errors, "dciodvfy %s: %s" % (p, errors[:5]))
    dump = subprocess.run(["dsrdump", p], stdout=subprocess.PIPE).stdout.decode()
    found_part = dump.split('"Views found"')[-1].split('"Views missing"')[0]
    missing_part = dump.split('"Views missing"')[-1].split('"Instances"')[0]
    for label in r["views_present"]:
        if label != "uncertain":
            ck("(%s,99USVIEW" % daemonlib.view_code(label) in found_part,
               "dsrdump: %s not under Views found" % label)
    for label in r["missing"]:
        ck("(%s,99USVIEW" % daemonlib.view_code(label) in missing_part,
           "dsrdump: %s not under Views missing" % label)
    ck(len(re.findall(r"\(\S+,99USVIEW", missing_part)) == len(r["missing"]),
       "dsrdump: other views under Views missing")
    ck('"Protocol")="%s"' % r["protocol"] in dump, "dsrdump: protocol")
    ck('"Record revision")="%d"' % r["revision"] in dump, "dsrdump: revision")
d.stop()
print("part 1: %d records, %d study SRs in %.1f s" % (len(all_recs), len(srs),
                                                      time.monotonic() - t_start), flush=True)

# ---- part 2: SIGKILL ------------------------------------------------------------------

t2 = time.monotonic()
k = Usviewd(tmp, model, destinations=[dest], extra={"qa": {"study_quiet_s": 1, "labels": True},
                                                      "protocols": PROTOCOLS},
            http=False, name="kill")
kplans, kproto = [], {}
for idx in range(3, NSTUDIES):
    views = rnd.sample(VIEWS, rnd.randint(4, 8))
    desc, proto = rnd.choice([("US ABDOMEN", "abdomen"), ("Renal", "renal"),
                              ("Other", "default")])
    kplans.append(make_study(idx, desc, views, wrong=set(rnd.sample(views, 1))))
    kproto[kplans[-1][0]] = proto
acked = set()
lock = threading.Lock()


def send_all(paths):
    for p in paths:
        for _ in range(100):
            if storescu(k.port, [p]):
                with lock:
                    acked.add(p)
                break
            time.sleep(0.1)


def state_of(study):
    name = hashlib.sha256(study.encode()).hexdigest()[:32] + ".json"
    p = os.path.join(k.spool, "studies", name)
    try:
        with open(p) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def kill_in_commit(study, timeout=15):
    """SIGKILL at a random moment of the next commit of study (between
    its pending state and the end: USV_STUDY_COMMIT_DELAY_MS holds each
    step 300 ms); restart. True when the commit was caught."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and not state_of(study).get("pending"):
        time.sleep(0.005)
    caught = bool(state_of(study).get("pending"))
    time.sleep(rnd.uniform(0.0, 0.5))
    k.kill()
    k.start(env_extra=DELAY)
    return caught


DELAY = {"USV_STUDY_COMMIT_DELAY_MS": "300"}
k.start(env_extra=DELAY)
kills = caught = 0
for i, (study, inst) in enumerate(kplans):
    items = sorted(inst.values(), key=lambda x: x["path"])
    late = items[-1]["path"]
    th = threading.Thread(target=send_all, args=([x["path"] for x in items[:-1]],))
    th.start()
    # kill at random while the study streams in, is quiet, or is being recorded
    time.sleep(rnd.uniform(0.2, 2.0))
    k.kill()
    kills += 1
    time.sleep(rnd.uniform(0.0, 0.2))
    k.start(env_extra=DELAY)
    th.join()
    # kill inside the commit of revision 1, then of the late instance's revision
    caught += kill_in_commit(study)
    kills += 1
    th = threading.Thread(target=send_all, args=([late],))
    th.start()
    th.join()
    caught += kill_in_commit(study)
    kills += 1
if not k.alive():
    k.start(env_extra=DELAY)
ck(len(acked) == sum(len(i) for _, i in kplans), "not every instance acknowledged")


def settled():
    lines = read_lines(k.spool)
    for study, inst in kplans:
        recs = records(lines, study)
        if not recs or recs[-1]["instances"] != len(inst):
            return False
    # no study waiting for a record
    sd = os.path.join(k.spool, "studies")
    for n in os.listdir(sd):
        if n.endswith(".json"):
            with open(os.path.join(sd, n)) as f:
                st = json.load(f)
            if st.get("pending") or st.get("seq", 0) > st.get("written_seq", 0):
                return False
    return True


ck(wait_for(settled, 30), "studies not settled after the kills:\n" + k.log()[-3000:])
k.stop()
lines = read_lines(k.spool)
nrec = 0
for study, inst in kplans:
    revs = [r["revision"] for r in records(lines, study)]
    nrec += len(revs)
    ck(revs == list(range(1, len(revs) + 1)),
       "study %s: revisions %r (want 1..n, each once)" % (study, revs))
    recs = records(lines, study)
    if recs:
        il = instance_lines(lines, study)
        ck(recs[-1]["instances"] == len(inst) == len(il), "study %s: last record counts %d" %
           (study, recs[-1]["instances"]))
        exp = expected_record(il, kproto[study])
        got = {x: recs[-1].get(x) for x in exp}
        ck(got == exp, "study %s after kills: %r, expected %r" % (study, got, exp))
ck(kills >= 3 * len(kplans), "only %d kills" % kills)
restarts_pending = k.log().count("have a revision pending")
ck(caught >= len(kplans), "only %d commits caught by a kill" % caught)
ck(restarts_pending >= 1, "no restart found a pending revision")
print("part 2: %d studies, %d records, %d SIGKILLs (%d inside a commit, %d restarts found a "
      "pending revision) in %.1f s" % (len(kplans), nrec, kills, caught, restarts_pending,
                                       time.monotonic() - t2), flush=True)
shutil.rmtree(ph, True)
ck.done()
