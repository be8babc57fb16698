"""haproxylib - HAProxy in front of usviewd nodes, for the tests.

    from haproxylib import sample_config
    text = sample_config(src_dir, port, nodes)

sample_config() turns packaging/haproxy/usview.cfg into a configuration
that runs unprivileged in the foreground on loopback: the lines that need
root (user, group, daemon, log /dev/log) go, the frontend binds
127.0.0.1:port, the health checks run every 300 ms instead of 2 s, and the
sample's servers are replaced by one line per node (name, DICOM port,
check on its http_port), after default-server. Everything else (TCP mode,
leastconn, send-proxy-v2, the /healthz check, retries, timeouts) is the
sample's, so the tests exercise what ops deploy.
"""

import os


def sample_config(src_dir, port, nodes):
    with open(os.path.join(src_dir, "packaging", "haproxy", "usview.cfg")) as f:
        sample = f.read()
    out = []
    for line in sample.splitlines():
        s = line.strip()
        if s in ("user haproxy", "group haproxy", "daemon") or s.startswith("log /dev/log"):
            continue
        if s.startswith("server "):
            continue
        if s.startswith("bind "):
            line = "\tbind 127.0.0.1:%d" % port
        line = line.replace("inter 2s", "inter 300ms")
        out.append(line)
        if s.startswith("default-server"):
            for n in nodes:
                out.append("\tserver %s 127.0.0.1:%d port %d" % (n.name, n.port, n.http_port))
    return "\n".join(out) + "\n"
