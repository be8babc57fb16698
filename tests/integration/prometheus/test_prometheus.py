"""usviewd monitored by a real Prometheus with the shipped configuration.

packaging/prometheus/usview.yml and usview.rules.yml are loaded by the
Debian prometheus server, changed only where a test must: the target is the
daemon started here, scrape and evaluation every second, and a test copy of
the rules with every `for:` cut to 2 s and every group evaluated each
second (UsviewdTargetsMissing keeps its 10 minutes: Prometheus applies its
first targets 5 s after starting). Checked through Prometheus' HTTP API,
not the daemon's own page:

- up{job="usviewd"} == 1, with the static label of the shipped job;
- after N instances sent with storescu: usview_instances_total received and
  done equal N (and done/ in the spool holds N files), usview_sent_total
  of the destination (DCMTK storescp) equals the files storescp received,
  its outbox depth and dead letters are 0;
- every usview_* family named in the rules is exported by the daemon;
- usview_spool_free_bytes is the spool's free space at scrape time (the
  daemon's USV_SPOOL_FAKE_FREE file, changed while it runs, is followed)
  and usview_spool_min_free_bytes is spool.min_free_mb in bytes;
- /api/v1/rules lists the three groups and every rule of the shipped file,
  each evaluated without error (health "ok");
- a healthy, idle node raises no alert even with the `for:` cut;
- free space between min_free and twice it: UsviewSpoolLowSpace fires,
  UsviewSpoolFull does not;
- after SIGKILL of the daemon: up == 0 and UsviewdDown goes pending, then
  firing, for that instance.

usage: test_prometheus.py MAKE_MODEL
Exit 77 (skipped) when the prometheus server is not installed.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import usvtest
import yaml
from daemonlib import Usviewd, make_us, parse_prometheus
from storescp import StoreSCP

PROM = shutil.which("prometheus")
if not PROM:
    print("SKIP: prometheus is not installed (Debian package prometheus)")
    sys.exit(77)

N = 6
MIB = 1048576
T0 = time.monotonic()
HERE = os.path.dirname(os.path.abspath(__file__))
PKG = os.path.join(os.environ.get("USV_SOURCE_DIR", os.path.join(HERE, "..", "..", "..")),
                   "packaging", "prometheus")

ck = usvtest.Check("prometheus_daemon")
tmp = usvtest.tempdir("usv-prom-")
model = os.path.join(tmp, "tiny.model")
subprocess.run([sys.argv[1], model], check=True)

# ---- usviewd with a fake free-space reading it re-reads at every scrape ----
fake = os.path.join(tmp, "free-bytes")
with open(fake, "w") as f:
    f.write("987654321000\n")
pacs = StoreSCP(os.path.join(tmp, "pacs"), aet="PACS").start()
d = Usviewd(tmp, model, extra={"spool": {"min_free_mb": 1}}, destinations=[
    {"name": "pacs", "ae_title": "PACS", "host": "127.0.0.1", "port": pacs.port,
     "send": ["sr"]}])
d.start(env_extra={"USV_SPOOL_FAKE_FREE": fake})
target = "127.0.0.1:%d" % d.http_port

files = []
for i in range(N):
    p = os.path.join(tmp, "in%d.dcm" % i)
    make_us(p, seed=i)
    files.append(p)
r = subprocess.run(["storescu", "-aec", "USVIEW", "127.0.0.1", str(d.port)] + files,
                   capture_output=True, text=True)
ck(r.returncode == 0, "storescu: %s" % r.stderr[-500:])
ck(d.wait_idle(30), "the daemon did not finish and deliver the instances")
ck(len(d.files("done")) == N, "done/ holds %d files, want %d" % (len(d.files("done")), N))

# ---- the shipped configuration, pointed at this daemon ----------------------
with open(os.path.join(PKG, "usview.yml")) as f:
    cfg = yaml.safe_load(f)
with open(os.path.join(PKG, "usview.rules.yml")) as f:
    rules = yaml.safe_load(f)
shipped = {}  # group name -> [alert or record names]
for g in rules["groups"]:
    shipped[g["name"]] = [r.get("alert") or r.get("record") for r in g["rules"]]
    g["interval"] = "1s"
    for rule in g["rules"]:
        # UsviewdTargetsMissing keeps its 10 minutes: Prometheus applies new
        # targets 5 s after it starts, so absent(up) holds until then.
        if "for" in rule and rule.get("alert") != "UsviewdTargetsMissing":
            rule["for"] = "2s"
rules_path = os.path.join(tmp, "usview.rules.yml")
with open(rules_path, "w") as f:
    yaml.safe_dump(rules, f, sort_keys=False)

job = [j for j in cfg["scrape_configs"] if j["job_name"] == "usviewd"]
ck(len(job) == 1, "usview.yml has one job usviewd")
job = job[0]
static_labels = dict(job["static_configs"][0].get("labels") or {})
job["static_configs"] = [{"targets": [target], "labels": static_labels}]
cfg["global"].update({"scrape_interval": "1s", "evaluation_interval": "1s",
                      "scrape_timeout": "1s"})
cfg["rule_files"] = [rules_path]
cfg_path = os.path.join(tmp, "prometheus.yml")
with open(cfg_path, "w") as f:
    yaml.safe_dump(cfg, f, sort_keys=False)

port = usvtest.free_port()
prom = usvtest.Proc([PROM, "--config.file=" + cfg_path,
                     "--storage.tsdb.path=" + os.path.join(tmp, "tsdb"),
                     "--web.listen-address=127.0.0.1:%d" % port],
                    log_path=os.path.join(tmp, "prometheus.log"), cwd=tmp)


def api(path, **params):
    url = "http://127.0.0.1:%d%s" % (port, path)
    if params:
        url += "?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = json.loads(resp.read().decode())
    if body.get("status") != "success":
        raise RuntimeError("%s: %s" % (path, body))
    return body["data"]


def query(expr):
    """[(labels, float value)] of an instant query."""
    return [(s["metric"], float(s["value"][1])) for s in api("/api/v1/query", query=expr)["result"]]


def wait_for(what, cond, timeout):
    """Polls cond() (a value, or None/False) every 0.2 s; returns the value."""
    end = time.monotonic() + timeout
    last, err = None, None
    while time.monotonic() < end:
        try:
            last = cond()
        except (OSError, RuntimeError, ValueError) as e:
            last, err = None, e
        if last:
            return last
        time.sleep(0.2)
    print("timed out waiting for %s (last error: %s)" % (what, err))
    return last


def alerts(name):
    return [a for a in api("/api/v1/alerts")["alerts"] if a["labels"].get("alertname") == name]


def one(expr):
    res = query(expr)
    return res[0][1] if len(res) == 1 else None


ready = wait_for("prometheus ready", lambda: usvtest.wait_port(port, 0.2, prom.p) and
                 urllib.request.urlopen("http://127.0.0.1:%d/-/ready" % port,
                                        timeout=2).status == 200, 20)
if not ck(ready, "prometheus did not start:\n" + prom.log()[-3000:]):
    ck.done()

# ---- scraping ---------------------------------------------------------------
up = wait_for("up == 1", lambda: [x for x in query('up{job="usviewd"}') if x[1] == 1], 15)
ck(up and up[0][0].get("instance") == target, "up{job=usviewd} == 1 for %s: %s" % (target, up))
ck(up and all(up[0][0].get(k) == v for k, v in static_labels.items()),
   "the job's static labels %s on the series: %s" % (static_labels, up))
done = one('usview_instances_total{job="usviewd",outcome="done"}')
ck(done == N, "usview_instances_total{outcome=done} = %s, sent %d" % (done, N))
recv = one('usview_instances_total{job="usviewd",outcome="received"}')
ck(recv == N, "usview_instances_total{outcome=received} = %s, sent %d" % (recv, N))
sent = one('usview_sent_total{job="usviewd",destination="pacs"}')
ck(sent == N and len(pacs.files()) == N,
   "usview_sent_total{destination=pacs} = %s, storescp holds %d, want %d"
   % (sent, len(pacs.files()), N))
ck(one('usview_outbox_depth{job="usviewd",destination="pacs"}') == 0
   and one('usview_dead_total{job="usviewd",destination="pacs"}') == 0, "outbox and dead")
ck(one('usview_spool_free_bytes{job="usviewd"}') == 987654321000,
   "usview_spool_free_bytes follows the spool's free space")
ck(one('usview_spool_min_free_bytes{job="usviewd"}') == 1 * MIB,
   "usview_spool_min_free_bytes is spool.min_free_mb in bytes")
# Metric relabelling keeps usview's families only: nothing else arrives.
names = {s["__name__"] for s in api("/api/v1/series", **{"match[]": '{job="usviewd"}'})}
# (ALERTS*: Prometheus' own series of the rules, e.g. UsviewdTargetsMissing
# pending at the first evaluation, before the first scrape.)
ck(names and all(n.startswith("usview_") or n.startswith("ALERTS") or n in (
    "up", "scrape_duration_seconds", "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling", "scrape_series_added") for n in names),
   "series of the job: %s" % sorted(names))

# ---- rules ------------------------------------------------------------------
# Every family the rules name is one the daemon exports (promtool cannot
# know; a misspelt name would leave its alert silent for ever).
status, _, text = d.http("/metrics")
families = set(parse_prometheus(text)[0]) if status == 200 else set()
with open(os.path.join(PKG, "usview.rules.yml")) as f:
    used = set(re.findall(r"(?<![\w:])usview_[a-z_]+", f.read()))
ck(used and used <= families, "families the rules use but usviewd does not export: %s"
   % sorted(used - families))

def rules_evaluated():
    groups = api("/api/v1/rules")["groups"]
    if any(r.get("health") != "ok" for g in groups for r in g["rules"]):
        return None
    return groups


groups = wait_for("every rule evaluated", rules_evaluated, 10)
if ck(groups, "rules not all healthy: %s" % json.dumps(api("/api/v1/rules"))[:2000]):
    got = {g["name"]: [r["name"] for r in g["rules"]] for g in groups}
    ck(got == shipped, "rule groups %s, want %s" % (got, shipped))
    nalerts = sum(1 for g in groups for r in g["rules"] if r["type"] == "alerting")
    ck(nalerts >= 10, "%d alerting rules loaded" % nalerts)

time.sleep(3)  # > the shortened for: 2 s, so any false alarm would fire by now
active = [(a["labels"]["alertname"], a["state"]) for a in api("/api/v1/alerts")["alerts"]]
ck(active == [], "a healthy idle node raised alerts: %s" % active)
fired = query('max_over_time(ALERTS{alertstate="firing"}[5m])')
ck(fired == [], "alerts fired since the start: %s" % fired)

# ---- spool nearly full: between min_free and twice it -----------------------
with open(fake + ".new", "w") as f:
    f.write("%d\n" % (MIB + MIB // 2))
os.replace(fake + ".new", fake)
low = wait_for("UsviewSpoolLowSpace firing",
               lambda: [a for a in alerts("UsviewSpoolLowSpace") if a["state"] == "firing"], 15)
ck(low and low[0]["labels"].get("instance") == target
   and low[0]["labels"].get("severity") == "warning", "UsviewSpoolLowSpace: %s" % low)
ck(one('usview_spool_free_bytes{job="usviewd"}') == MIB + MIB // 2,
   "usview_spool_free_bytes did not follow the change")
ck(alerts("UsviewSpoolFull") == [], "UsviewSpoolFull with free space above min_free")

# ---- node down --------------------------------------------------------------
d.kill()
down = wait_for("up == 0", lambda: [x for x in query('up{job="usviewd"}') if x[1] == 0], 10)
ck(down, "up did not drop to 0 after SIGKILL")
states = set()


def down_firing():
    for a in alerts("UsviewdDown"):
        if a["labels"].get("instance") == target:
            states.add(a["state"])
            return a["state"] == "firing" and a
    return None


a = wait_for("UsviewdDown firing", down_firing, 15)
ck(a and a["labels"].get("severity") == "critical"
   and a["annotations"].get("summary") == "usviewd on %s is down" % target,
   "UsviewdDown firing with severity and summary: %s (states seen %s)" % (a, states))
print("prometheus_daemon: UsviewdDown states seen %s, %.1f s in all"
      % (sorted(states), time.monotonic() - T0))

prom.stop()
ck.done()
