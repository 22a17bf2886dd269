#!/usr/bin/env python3
"""bench/dns_bench.py - initial sync of N hosts (default 1,000) into a real BIND 9 (`make bench`).

Starts `named` on loopback (tests/integration/bind.py: one zone, a TSIG key, an update-policy),
generates N Ingresses with one host each, and runs `gatehouse-agent --once` with an rfc2136 sink.
Measured, for each phase:
  initial  every host is new: N names read (3 queries each) and published
  again    nothing changed: the read-only cost of a full resync
  change   a running agent serving the N hosts gets one more Ingress: the time from writing the
           manifest until dig sees the new record (only changed names are read)
  remove   every Ingress removed: all records withdrawn
The agent reports per sync the names, UPDATE messages and queries; the wall time is the agent
run (process start to exit, so it includes reading and translating the manifests). The zone is
checked with AXFR after each phase (N A records and N ownership TXT, then none).

Results: build/bench/dns-results.json and build/bench/dns-results.md. Processes are started
from argument lists (no shell) and stopped at the end.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

import yaml  # noqa: E402

from bind import Named  # noqa: E402

AGENT = os.path.join(os.environ.get("GATEHOUSE_BIN", os.path.join(ROOT, "build", "bin")),
                     "gatehouse-agent")
ADDRESS = "192.0.2.10"
SYNC_LINE = re.compile(r"in sync \([a-z ]+\): (\d+) names, (\d+) changed in (\d+) UPDATE messages "
                       r"\((\d+) queries, (\d+) conflicts retried, (\d+) foreign\) in (\d+) ms")
NOTHING_LINE = re.compile(r"in sync \([a-z ]+\): (\d+) names, nothing to change \((\d+) queries\) in (\d+) ms")


def manifests(n, zone):
    docs = [{"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
             "metadata": {"name": "gatehouse"},
             "spec": {"controller": "gatehouse.dev/ingress-controller"}},
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web",
                                                               "namespace": "default"},
             "spec": {"ports": [{"name": "http", "port": 80}]}}]
    for i in range(n):
        docs.append({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                     "metadata": {"name": "host-%04d" % i, "namespace": "default",
                                  "creationTimestamp": "2020-01-01T00:00:00Z"},
                     "spec": {"ingressClassName": "gatehouse",
                              "rules": [{"host": "host-%04d.%s" % (i, zone.rstrip(".")),
                                         "http": {"paths": [{"path": "/", "pathType": "Prefix",
                                                             "backend": {"service": {
                                                                 "name": "web",
                                                                 "port": {"number": 80}}}}]}}]}})
    return docs


def run_agent(work, config):
    argv = [AGENT, "--manifests", os.path.join(work, "manifests"), "--state-dir",
            os.path.join(work, "state"), "--config", config, "--once", "--verbose"]
    start = time.monotonic()
    out = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    wall = time.monotonic() - start
    if out.returncode != 0:
        raise SystemExit("agent failed (rc=%d):\n%s" % (out.returncode, out.stderr[-3000:]))
    m = SYNC_LINE.search(out.stderr)
    if m:
        names, changed, updates, queries, conflicts, foreign, ms = map(int, m.groups())
    else:
        m = NOTHING_LINE.search(out.stderr)
        if not m:
            raise SystemExit("no sync line in the agent's log:\n%s" % out.stderr[-3000:])
        names, queries, ms = map(int, m.groups())
        changed = updates = conflicts = foreign = 0
    if "error" in out.stderr:
        raise SystemExit("the agent reported errors:\n%s" % out.stderr[-3000:])
    return {"wall_s": round(wall, 3), "sync_ms": ms, "names": names, "changed": changed,
            "update_messages": updates, "queries": queries, "conflicts": conflicts,
            "foreign": foreign}


def change_latency(work, config, named, n):
    """Starts a watching agent, waits for its first pass, adds one Ingress, times dig."""
    argv = [AGENT, "--manifests", os.path.join(work, "manifests"), "--state-dir",
            os.path.join(work, "state"), "--config", config, "--verbose"]
    log = open(os.path.join(work, "agent.log"), "w+")
    agent = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stderr=log,
                             stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while "in sync" not in open(log.name).read():
            if time.monotonic() > deadline or agent.poll() is not None:
                raise SystemExit("the agent did not sync:\n" + open(log.name).read()[-3000:])
            time.sleep(0.05)
        time.sleep(0.5)
        host = "added.%s" % named.zone.rstrip(".")
        doc = manifests(1, named.zone)[2]
        doc["metadata"]["name"] = "added"
        doc["spec"]["rules"][0]["host"] = host
        start = time.monotonic()
        with open(os.path.join(work, "manifests", "added.yaml.tmp"), "w") as f:
            yaml.safe_dump(doc, f)
        os.rename(os.path.join(work, "manifests", "added.yaml.tmp"),
                  os.path.join(work, "manifests", "added.yaml"))
        deadline = start + 30
        while named.dig(host) != [ADDRESS]:
            if time.monotonic() > deadline:
                raise SystemExit("the new host did not appear:\n" + open(log.name).read()[-3000:])
            time.sleep(0.01)
        took = time.monotonic() - start
        os.unlink(os.path.join(work, "manifests", "added.yaml"))
        deadline = time.monotonic() + 30
        while named.dig(host) != []:
            if time.monotonic() > deadline:
                raise SystemExit("the new host did not go away")
            time.sleep(0.01)
        return {"hosts_served": n, "visible_after_s": round(took, 3)}
    finally:
        agent.terminate()
        agent.wait(timeout=10)
        log.close()


def count_zone(named):
    records = named.axfr()
    a = sum(1 for _, t, _ in records if t == "A" and _ != "127.0.0.1")
    txt = sum(1 for _, t, v in records if t == "TXT" and "heritage=gatehouse" in v)
    return a, txt


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=1000)
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "bench"))
    args = ap.parse_args()
    if not os.access(AGENT, os.X_OK):
        raise SystemExit("%s is missing: run make" % AGENT)
    work = tempfile.mkdtemp(prefix="gatehouse-dns-bench-")
    named = Named(work)
    try:
        named.start()
        for d in ("manifests", "state"):
            os.makedirs(os.path.join(work, d))
        config = os.path.join(work, "config.yaml")
        with open(config, "w") as f:
            yaml.safe_dump({"node": {"name": "edge-1", "address": ADDRESS},
                            "dns": [{"type": "rfc2136", "server": named.server,
                                     "zone": named.zone, "tsig": named.tsig_config()}]}, f)
        all_yaml = os.path.join(work, "manifests", "all.yaml")
        with open(all_yaml, "w") as f:
            yaml.safe_dump_all(manifests(args.hosts, named.zone), f)

        results = {"hosts": args.hosts, "bind": subprocess.run(
            ["named", "-v"], capture_output=True, text=True).stdout.strip()}
        results["initial"] = run_agent(work, config)
        results["initial"]["zone_a_txt"] = count_zone(named)
        results["again"] = run_agent(work, config)
        results["change"] = change_latency(work, config, named, args.hosts)
        with open(all_yaml, "w") as f:
            yaml.safe_dump_all(manifests(0, named.zone), f)
        results["remove"] = run_agent(work, config)
        results["remove"]["zone_a_txt"] = count_zone(named)
    finally:
        named.stop()
        shutil.rmtree(work, ignore_errors=True)

    want = (args.hosts, args.hosts)
    ok = results["initial"]["zone_a_txt"] == want and results["remove"]["zone_a_txt"] == (0, 0)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "dns-results.json"), "w") as f:
        json.dump(results, f, indent=1)
    lines = ["| phase | names | changed | UPDATE messages | queries | sync | agent run |",
             "|---|---|---|---|---|---|---|"]
    for phase in ("initial", "again", "remove"):
        r = results[phase]
        lines.append("| %s | %d | %d | %d | %d | %d ms | %.2f s |" % (
            phase, r["names"], r["changed"], r["update_messages"], r["queries"], r["sync_ms"],
            r["wall_s"]))
    text = ("DNS: %d hosts into %s over RFC 2136 + TSIG (hmac-sha256), loopback\n\n%s\n\n"
            "One more Ingress beside them, agent running: in DNS after %.3f s\n" % (
                args.hosts, results["bind"], "\n".join(lines),
                results["change"]["visible_after_s"]))
    with open(os.path.join(args.out, "dns-results.md"), "w") as f:
        f.write(text)
    print(text)
    print("one more Ingress beside %d served hosts: in DNS after %.3f s (incl. the 50 ms "
          "folder-watch debounce)" % (args.hosts, results["change"]["visible_after_s"]))
    print("zone after initial sync: %d A, %d ownership TXT; after removal: %d A, %d TXT" % (
        results["initial"]["zone_a_txt"] + results["remove"]["zone_a_txt"]))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
