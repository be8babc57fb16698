"""pgcluster - a private PostgreSQL server on loopback for integration tests.

    from pgcluster import PgCluster
    pg = PgCluster(tmp)          # initdb + start; exits 77 without the server
    pg.dsn                       # libpq conninfo for the nodes' role (TCP)
    pg.env                       # {"PGPASSFILE": ...} holding that role's password
    pg.psql("SELECT 1")          # -> [["1"]] (superuser, database usview)
    pg.kill(); pg.start()        # the database goes down (no shutdown
                                 # checkpoint, clients cut) and comes back
    pg.stop()                    # fast shutdown; also done at exit

The server binaries are looked up in /usr/lib/postgresql/<version>/bin
(the highest version; Debian's postgresql package). The cluster lives in
<tmp>/pg-<n>: data/ (initdb), the Unix socket (unix_socket_directories) and
server.log. It listens on 127.0.0.1 on a free port with fsync and
synchronous_commit on. The server must not run as root: as root the
cluster belongs to the "postgres" system user (else "nobody") and every
server command runs through runuser; otherwise it runs as the caller.

Roles: "postgres" (superuser, trusted on the Unix socket only: psql()) and
"usview" (LOGIN, owner of database "usview", password authentication over
TCP; the password is in a passfile, see .env). The server is stopped at
exit even when the test fails (atexit), and by stop() / a with block.
"""

import atexit
import csv
import glob
import io
import os
import pwd
import re
import secrets
import shutil
import subprocess
import sys
import time

import usvtest


def server_bindir():
    """The bin folder of the highest installed PostgreSQL server version
    that has initdb, pg_ctl and postgres; None when there is none."""
    best = None
    for d in glob.glob("/usr/lib/postgresql/*/bin"):
        ver = os.path.basename(os.path.dirname(d))
        if not re.fullmatch(r"\d+(\.\d+)?", ver):
            continue
        if not all(os.access(os.path.join(d, b), os.X_OK) for b in ("initdb", "pg_ctl",
                                                                     "postgres")):
            continue
        key = tuple(int(x) for x in ver.split("."))
        if best is None or key > best[0]:
            best = (key, d)
    return best[1] if best else None


class PgClusterError(RuntimeError):
    pass


class PgCluster:
    DB = "usview"
    ROLE = "usview"
    SUPERUSER = "postgres"

    def __init__(self, tmpdir, start=True, settings=None):
        self.bindir = server_bindir()
        if not self.bindir:
            print("PostgreSQL server binaries not found (/usr/lib/postgresql/<version>/bin/"
                  "initdb, pg_ctl, postgres): install the postgresql package "
                  "(scripts/install-deps.sh)", flush=True)
            sys.exit(77)
        self.psql_bin = os.path.join(self.bindir, "psql")
        if not os.access(self.psql_bin, os.X_OK):
            self.psql_bin = shutil.which("psql")
        if not self.psql_bin:
            print("psql not found (postgresql-client)", flush=True)
            sys.exit(77)
        self.version = os.path.basename(os.path.dirname(self.bindir))
        self.user = None  # run as self
        if os.geteuid() == 0:
            for name in ("postgres", "nobody"):
                try:
                    self.user = pwd.getpwnam(name)
                    break
                except KeyError:
                    pass
            if self.user is None:
                raise PgClusterError("running as root and neither a postgres nor a nobody user")
        # the server user must be able to reach its folder: open the path up
        # for traversal (x only) where the test's temp folder is private
        if self.user is not None:
            os.chmod(tmpdir, os.stat(tmpdir).st_mode | 0o011)
        n = 1
        while os.path.exists(os.path.join(tmpdir, "pg-%d" % n)):
            n += 1
        self.dir = os.path.join(tmpdir, "pg-%d" % n)
        self.data = os.path.join(self.dir, "data")
        self.sockdir = self.dir
        self.log_path = os.path.join(self.dir, "server.log")
        os.makedirs(self.dir, mode=0o700)
        if self.user is not None:
            os.chown(self.dir, self.user.pw_uid, self.user.pw_gid)
        self.port = usvtest.free_port()
        self.password = secrets.token_hex(12)
        self.passfile = os.path.join(tmpdir, "pgpass-%d" % n)
        with open(self.passfile, "w") as f:
            f.write("127.0.0.1:%d:%s:%s:%s\n" % (self.port, self.DB, self.ROLE, self.password))
        os.chmod(self.passfile, 0o600)
        self.env = {"PGPASSFILE": self.passfile}
        self.dsn = ("host=127.0.0.1 port=%d dbname=%s user=%s connect_timeout=5"
                    % (self.port, self.DB, self.ROLE))
        self.running = False
        atexit.register(self._atexit)
        self._run([os.path.join(self.bindir, "initdb"), "-D", self.data, "-U", self.SUPERUSER,
                   "-E", "UTF8", "--locale=C", "--auth-local=trust",
                   "--auth-host=scram-sha-256", "--no-sync"], "initdb")
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": "'%s'" % self.sockdir,
            "fsync": "on",
            "synchronous_commit": "on",
            "full_page_writes": "on",
            "max_connections": "60",
            "shared_buffers": "32MB",
            "logging_collector": "off",
            "log_line_prefix": "'%m [%p] %u@%d '",
            "log_min_messages": "warning",
            "password_encryption": "'scram-sha-256'",
        }
        if int(self.version.split(".")[0]) >= 14:
            # crash recovery (after kill()) syncs the data folder: one
            # syncfs() instead of an fsync() per file
            conf["recovery_init_sync_method"] = "syncfs"
        conf.update(settings or {})
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write("\n# pgcluster.py\n")
            for k, v in conf.items():
                f.write("%s = %s\n" % (k, v))
        if start:
            self.start()
            self.psql("CREATE ROLE %s LOGIN PASSWORD '%s'" % (self.ROLE, self.password),
                      db="postgres")
            self.psql("CREATE DATABASE %s OWNER %s" % (self.DB, self.ROLE), db="postgres")

    # ---- running things as the server's user
    def _argv(self, argv):
        if self.user is None:
            return argv
        return ["runuser", "-u", self.user.pw_name, "--"] + argv

    def _run(self, argv, what, timeout=120):
        env = dict(os.environ)
        env.pop("PGDATA", None)
        env["LC_ALL"] = "C"
        r = subprocess.run(self._argv(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           env=env, cwd=self.dir, timeout=timeout)
        if r.returncode != 0:
            raise PgClusterError("%s failed (%d):\n%s\n%s" % (
                what, r.returncode, r.stdout.decode("utf-8", "replace")[-3000:],
                self.log()[-3000:]))
        return r.stdout.decode("utf-8", "replace")

    def _pg_ctl(self, *args, timeout=120):
        return self._run([os.path.join(self.bindir, "pg_ctl"), "-D", self.data] + list(args),
                         "pg_ctl " + " ".join(args), timeout=timeout)

    # ---- life cycle
    def start(self, timeout=60):
        """Starts the server and waits until it accepts connections."""
        self._pg_ctl("start", "-w", "-t", str(timeout), "-l", self.log_path,
                     timeout=timeout + 30)
        self.running = True
        return self

    def stop(self, timeout=60):
        """Fast shutdown: sessions are cut, a checkpoint is written."""
        if self.running:
            self.running = False
            self._pg_ctl("stop", "-m", "fast", "-w", "-t", str(timeout), timeout=timeout + 30)

    def kill(self, timeout=60):
        """The database goes away at once, as in a crash: immediate
        shutdown (every server process quits without a checkpoint, clients
        see their connections drop); start() then runs crash recovery."""
        if self.running:
            self.running = False
            self._pg_ctl("stop", "-m", "immediate", "-w", "-t", str(timeout),
                         timeout=timeout + 30)

    def is_ready(self):
        r = subprocess.run([os.path.join(self.bindir, "pg_isready"), "-h", "127.0.0.1", "-p",
                            str(self.port), "-t", "2"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        return r.returncode == 0

    def _atexit(self):
        try:
            if self.running:
                self.stop(timeout=30)
        except Exception:  # noqa: BLE001 - at exit, try harder
            try:
                self.kill(timeout=30)
            except Exception:  # noqa: BLE001
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    # ---- queries
    def psql(self, sql, db=None, timeout=120):
        """Runs sql as the superuser over the Unix socket; returns the rows
        of the last statement as lists of strings (NULL as "")."""
        r = subprocess.run([self.psql_bin, "-X", "-q", "-t", "--csv", "-v", "ON_ERROR_STOP=1",
                            "-h", self.sockdir, "-p", str(self.port), "-U", self.SUPERUSER,
                            "-d", db or self.DB, "-c", sql],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout,
                           env=dict(os.environ, PGCONNECT_TIMEOUT="5"))
        if r.returncode != 0:
            raise PgClusterError("psql %r: %s" % (sql[:200], r.stderr.decode("utf-8", "replace")))
        return [row for row in csv.reader(io.StringIO(r.stdout.decode("utf-8")))]

    def scalar(self, sql, db=None):
        rows = self.psql(sql, db)
        return rows[0][0] if rows and rows[0] else None

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""


if __name__ == "__main__":
    # self-check: python3 pgcluster.py
    t0 = time.monotonic()
    tmp = usvtest.tempdir("usv-pg-")
    pg = PgCluster(tmp)
    print("PostgreSQL %s on port %d as %s, up in %.1f s" % (
        pg.version, pg.port, pg.user.pw_name if pg.user else "self", time.monotonic() - t0))
    pg.psql("CREATE TABLE t(a int, b text)")
    pg.psql("INSERT INTO t VALUES (1, 'x,\"y\"\nz'), (2, NULL)")
    print(pg.psql("SELECT a, b FROM t ORDER BY a"))
    pg.kill()
    print("ready after kill:", pg.is_ready())
    pg.start()
    print("rows after restart:", pg.psql("SELECT count(*) FROM t"))
    r = subprocess.run([pg.psql_bin, "-X", "-At", "-d", pg.dsn, "-c", "SELECT current_user"],
                       capture_output=True, text=True, env=dict(os.environ, **pg.env))
    print("as the node role over TCP:", r.stdout.strip(), r.stderr.strip())
    pg.stop()
