"""A real BIND 9 `named` on loopback for the DNS tests: one primary zone (edge.example. unless
told otherwise), a TSIG key, and an update-policy granting that key the whole zone. Checked with
`dig`; changed behind the agent's back with `nsupdate`. Each Named runs in its own folder and
process group, on a free port, and is killed at teardown."""
import base64
import os
import shutil
import signal
import subprocess
import time

from helpers import free_port, wait_until

try:
    import pytest
except ImportError:     # bench/dns_bench.py uses Named without pytest
    pytest = None

ZONE = "edge.example."
KEY_NAME = "gatehouse"


def _tool(name):
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if not path:
        raise AssertionError("%s is missing: install bind9 and bind9-dnsutils "
                             "(tools/install-deps test)" % name)
    return path


class Named:
    def __init__(self, base, zone=ZONE, algorithm="hmac-sha256", policy=None):
        self.dir = os.path.join(str(base), "named")
        os.makedirs(self.dir, exist_ok=True)
        self.zone = zone
        self.algorithm = algorithm
        self.policy = policy or "grant %s zonesub ANY;" % KEY_NAME
        self.secret = base64.b64encode(os.urandom(32)).decode()
        self.port = free_port()        # a free TCP port; named binds UDP and TCP on it
        self.proc = None
        self.log_path = os.path.join(self.dir, "named.log")
        self._write_config()

    @property
    def server(self):
        return "127.0.0.1:%d" % self.port

    def _write_config(self):
        zone = self.zone.rstrip(".")
        with open(os.path.join(self.dir, "db." + zone), "w") as f:
            f.write("$TTL 60\n"
                    "@ IN SOA ns.%s. admin.%s. 1 3600 600 86400 60\n"
                    "@ IN NS ns.%s.\n"
                    "ns IN A 127.0.0.1\n" % (zone, zone, zone))
        with open(os.path.join(self.dir, "named.conf"), "w") as f:
            f.write("""
options {
    directory "%(dir)s";
    pid-file "%(dir)s/named.pid";
    session-keyfile "%(dir)s/session.key";
    listen-on port %(port)d { 127.0.0.1; };
    listen-on-v6 { none; };
    recursion no;
    dnssec-validation no;
    notify no;
    allow-query { any; };
};
controls { };
key "%(key)s" { algorithm %(alg)s; secret "%(secret)s"; };
zone "%(zone)s" {
    type primary;
    file "%(dir)s/db.%(zone)s";
    allow-transfer { key %(key)s; };
    update-policy { %(policy)s };
};
""" % {"dir": self.dir, "port": self.port, "key": KEY_NAME, "alg": self.algorithm,
       "secret": self.secret, "zone": zone, "policy": self.policy})

    def start(self, timeout=10):
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [_tool("named"), "-g", "-4", "-n", "1", "-c", os.path.join(self.dir, "named.conf")],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=self.dir)

        def up():
            assert self.proc.poll() is None, "named exited: %s" % self.logs()
            return self.dig(self.zone, "SOA") != []
        wait_until(up, timeout, interval=0.05, what="named to answer on %s" % self.server)
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        if self.proc:
            self._log.close()

    def logs(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")[-6000:]
        except OSError:
            return ""

    # ---- looking and touching

    def dig(self, name, rtype="A"):
        """The records of one type at name, as dig +short prints them (sorted)."""
        out = subprocess.run(
            [_tool("dig"), "@127.0.0.1", "-p", str(self.port), "+short", "+norecurse",
             "+time=2", "+tries=1", name, rtype],
            capture_output=True, text=True, timeout=10)
        if out.returncode != 0:
            raise AssertionError("dig %s %s failed: %s" % (name, rtype, out.stdout + out.stderr))
        return sorted(line for line in out.stdout.splitlines() if line.strip())

    def axfr(self):
        """The whole zone as (name, type, rdata) tuples, transferred with our key."""
        out = subprocess.run(
            [_tool("dig"), "@127.0.0.1", "-p", str(self.port), "+noall", "+answer", "+time=5",
             "-y", "%s:%s:%s" % (self.algorithm, KEY_NAME, self.secret), self.zone, "AXFR"],
            capture_output=True, text=True, timeout=30)
        records = []
        for line in out.stdout.splitlines():
            parts = line.split(None, 4)
            if len(parts) == 5 and not line.startswith(";"):
                records.append((parts[0], parts[3], parts[4]))
        return records

    def dig_ttl(self, name, rtype="A"):
        out = subprocess.run(
            [_tool("dig"), "@127.0.0.1", "-p", str(self.port), "+noall", "+answer",
             "+norecurse", "+time=2", "+tries=1", name, rtype],
            capture_output=True, text=True, timeout=10)
        return sorted(int(line.split()[1]) for line in out.stdout.splitlines() if line.strip())

    def nsupdate(self, *commands, secret=None):
        """Runs nsupdate with our key (or another secret) against the zone."""
        script = "server 127.0.0.1 %d\nzone %s\n%s\nsend\n" % (self.port, self.zone,
                                                               "\n".join(commands))
        key = "%s:%s:%s" % (self.algorithm, KEY_NAME, secret or self.secret)
        out = subprocess.run([_tool("nsupdate"), "-y", key], input=script, capture_output=True,
                             text=True, timeout=10)
        if out.returncode != 0:
            raise AssertionError("nsupdate failed: %s" % (out.stdout + out.stderr))

    def tsig_config(self, secret=None, algorithm=None):
        return {"name": KEY_NAME, "algorithm": algorithm or self.algorithm,
                "secret": secret or self.secret}


def _named(tmp_path):
    n = Named(tmp_path)
    try:
        n.start()
        yield n
    finally:
        n.stop()


if pytest:
    named = pytest.fixture(name="named")(_named)


def wait_records(named, name, want, rtype="A", timeout=5.0):
    """Polls dig until the RRset equals want (a sorted list); returns the seconds it took."""
    start = time.monotonic()
    wait_until(lambda: named.dig(name, rtype) == sorted(want), timeout, interval=0.05,
               what="%s %s == %s (last: %s)" % (name, rtype, sorted(want),
                                              named.dig(name, rtype)))
    return time.monotonic() - start
