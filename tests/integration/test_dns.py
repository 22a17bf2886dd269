"""DNS records for served hosts, against a real BIND 9 (bind.py) and checked with dig: records
follow the Ingresses, TSIG is enforced, foreign names are left alone, several nodes share a name,
drift is repaired, and the hosts file matches what is served."""
import os
import re
import time

import yaml

import helpers
from bind import KEY_NAME, Named, named, wait_records  # noqa: F401 - named is a fixture
from conftest import AGENT, Proc, _binary
from helpers import ingress, ingress_class, service_for, wait_until

ADDR1 = "192.0.2.10"
ADDR2 = "192.0.2.20"
ADDR6 = "2001:db8::10"


def _ing(name, hosts, annotations=None, tls_hosts=None, created=helpers.OLD):
    doc = ingress(name, [(h, [("/", "Prefix", "web", 80)]) for h in hosts],
                  annotations=annotations, created=created)
    if tls_hosts:
        doc["spec"]["tls"] = [{"hosts": list(tls_hosts), "secretName": "none"}]
    return doc


def _docs(*ingresses):
    return [ingress_class()] + service_for("web", ["127.0.0.1:9"]) + list(ingresses)


def _config(env, named, name="edge-1", address=ADDR1, resync="5m", tsig=None, hosts=True,
            filename="config.yaml", extra_sinks=(), ttl=60, wildcards=True):
    sinks = [{"type": "rfc2136", "server": named.server, "zone": named.zone, "ttl": ttl,
              "owner": name, "resync": resync, "timeout": "1s", "wildcards": wildcards,
              "tsig": tsig or named.tsig_config()}]
    if hosts:
        sinks.append({"type": "hosts", "path": os.path.join(env.base, name + ".hosts"),
                      "resync": resync})
    sinks += list(extra_sinks)
    cfg = {"node": {"name": name, "address": address}, "dns": sinks}
    return env.write_config(yaml.safe_dump(cfg), name=filename)


def _agent(env, config, state, manifests=None, once=False):
    """An agent with its own state folder (several may run side by side)."""
    os.makedirs(state, exist_ok=True)
    argv = [_binary(AGENT), "--manifests", manifests or env.manifests, "--state-dir", state,
            "--config", config] + (["--once"] if once else [])
    p = Proc(env._name("agent"), argv, env.logs)
    env.procs.append(p)
    return p


def _start(env, config, state=None, manifests=None):
    """An agent watching the manifests."""
    if state is None:
        return env.start_agent(["--config", config])
    return _agent(env, config, state, manifests)


def _txt(owner, *addrs):
    return '"heritage=gatehouse,owner=%s,addresses=%s"' % (owner, ";".join(addrs))


def _hosts_lines(path):
    with open(path) as f:
        return sorted(line for line in f.read().splitlines() if line and not line.startswith("#"))


def test_records_follow_ingresses(env, named):
    config = _config(env, named)
    env.write_manifests(_docs(
        _ing("shop", ["shop.edge.example", "*.apps.edge.example", "other.test"],
             tls_hosts=["secure.edge.example"],
             annotations={"gatehouse.dev/hostname": "extra.edge.example, alias.edge.example",
                          "gatehouse.dev/ttl": "5m"}),
        _ing("blog", ["Blog.Edge.Example"])))
    agent = _start(env, config)
    for name in ("shop", "secure", "extra", "alias", "blog"):
        wait_records(named, name + ".edge.example", [ADDR1])
    assert named.dig("shop.edge.example", "TXT") == [_txt("edge-1", ADDR1)]
    assert named.dig_ttl("shop.edge.example") == [300]          # gatehouse.dev/ttl
    assert named.dig_ttl("blog.edge.example") == [60]           # the sink's ttl
    assert named.dig("anything.apps.edge.example") == [ADDR1]   # a wildcard record
    wait_until(lambda: "other.test is outside every configured zone" in agent.stderr(), 5,
               what="the out-of-zone host to be reported")
    hosts_file = os.path.join(env.base, "edge-1.hosts")
    wait_until(lambda: _hosts_lines(hosts_file) == sorted(
        ["%s %s.edge.example" % (ADDR1, n) for n in ("shop", "secure", "extra", "alias", "blog")]
        + ["%s other.test" % ADDR1]),
        5, what="the hosts file to list the served hosts")

    # the change reaches DNS within a second; removing an Ingress removes its records
    env.write_manifests(_docs(_ing("blog", ["blog.edge.example", "new.edge.example"])))
    took = wait_records(named, "new.edge.example", [ADDR1], timeout=5)
    print("new host visible in DNS after %.3f s" % took)
    assert took < 1.5
    for name in ("shop", "secure", "extra", "alias"):
        wait_records(named, name + ".edge.example", [])
        assert named.dig(name + ".edge.example", "TXT") == []
    assert named.dig("anything.apps.edge.example") == []
    assert named.dig("blog.edge.example") == [ADDR1]
    wait_until(lambda: _hosts_lines(hosts_file) == sorted(
        "%s %s.edge.example" % (ADDR1, n) for n in ("blog", "new")), 5,
        what="the hosts file to follow")
    assert agent.alive()


def test_node_address_flag_publishes_aaaa(env, named):
    config = _config(env, named, hosts=False)
    env.write_manifests(_docs(_ing("web", ["dual.edge.example"])))
    p = env.run_agent_once(["--config", config, "--node-address", "%s,%s" % (ADDR1, ADDR6)])
    assert p.p.returncode == 0, p.stderr()
    assert named.dig("dual.edge.example") == [ADDR1]
    assert named.dig("dual.edge.example", "AAAA") == [ADDR6]
    assert named.dig("dual.edge.example", "TXT") == [_txt("edge-1", ADDR1, ADDR6)]


def test_wrong_key_is_refused_with_a_clear_error(env, named):
    wrong = named.tsig_config(secret="d3Jvbmcgc2VjcmV0IHdyb25nIHNlY3JldCB3cm9uZyE=")
    config = _config(env, named, tsig=wrong, hosts=False)
    env.write_manifests(_docs(_ing("web", ["shop.edge.example"])))
    p = env.run_agent_once(["--config", config])
    assert p.p.returncode == 0, "DNS failures must not fail the routes: %s" % p.stderr()
    assert os.path.exists(env.routes)
    err = p.stderr()
    assert "BADSIG" in err, err
    assert "d3Jvbmcgc2VjcmV0" not in err              # the secret is never logged
    assert named.dig("shop.edge.example") == []

    # a key the server does not know at all
    unknown = dict(named.tsig_config(), name="nobody")
    config = _config(env, named, tsig=unknown, hosts=False, filename="unknown.yaml")
    p = env.run_agent_once(["--config", config])
    assert "BADKEY" in p.stderr(), p.stderr()


def test_server_down_never_blocks_routing_and_is_retried(env, named):
    config = _config(env, named, hosts=False)
    named.stop()
    env.write_manifests(_docs(_ing("web", ["late.edge.example"])))
    agent = _start(env, config)
    wait_until(lambda: "retrying in" in agent.stderr(), 10, what="the failure to be logged")
    with open(env.routes) as f:
        assert "late.edge.example" in f.read()
    env.write_manifests(_docs(_ing("web", ["late.edge.example", "later.edge.example"])))
    wait_until(lambda: "later.edge.example" in open(env.routes).read(), 5,
               what="routing to go on while DNS is down")
    named.start()
    wait_records(named, "later.edge.example", [ADDR1], timeout=10)
    wait_until(lambda: "working again" in agent.stderr(), 5, what="the recovery to be logged")


def test_foreign_record_is_left_untouched_and_reported(env, named):
    named.nsupdate("update add taken.edge.example. 120 A 198.51.100.7",
                   "update add cname.edge.example. 120 CNAME elsewhere.example.")
    config = _config(env, named, hosts=False)
    env.write_manifests(_docs(_ing("web", ["taken.edge.example", "cname.edge.example",
                                           "free.edge.example"])))
    agent = _start(env, config)
    wait_records(named, "free.edge.example", [ADDR1])
    wait_until(lambda: "taken.edge.example has A/AAAA records that Gatehouse does not own"
               in agent.stderr(), 5, what="the foreign name to be reported")
    assert "cname.edge.example has a CNAME" in agent.stderr()
    assert named.dig("taken.edge.example") == ["198.51.100.7"]
    assert named.dig_ttl("taken.edge.example") == [120]
    assert named.dig("taken.edge.example", "TXT") == []
    assert named.dig("cname.edge.example", "CNAME") == ["elsewhere.example."]
    # and it stays so when the Ingress goes away
    env.write_manifests(_docs(_ing("web", ["free.edge.example"])))
    time.sleep(0.5)
    wait_records(named, "free.edge.example", [ADDR1])
    assert named.dig("taken.edge.example") == ["198.51.100.7"]


def test_two_nodes_share_a_host(env, named):
    both = _docs(_ing("web", ["rr.edge.example"]))
    one = os.path.join(env.base, "m1")
    two = os.path.join(env.base, "m2")
    for d in (one, two):
        os.makedirs(d)
        helpers.write_atomic(os.path.join(d, "all.yaml"), helpers.dump_docs(both))
    # different TTLs and a fast resync: whoever came first sets the RRset's TTL, and the other
    # does not fight over it (no updates after the first)
    c1 = _config(env, named, name="edge-1", address=ADDR1, hosts=False, filename="c1.yaml",
                 resync="500ms", ttl=60)
    c2 = _config(env, named, name="edge-2", address=ADDR2, hosts=False, filename="c2.yaml",
                 resync="500ms", ttl=120)
    a1 = _start(env, c1, state=os.path.join(env.base, "s1"), manifests=one)
    wait_records(named, "rr.edge.example", [ADDR1])
    a2 = _start(env, c2, state=os.path.join(env.base, "s2"), manifests=two)
    wait_records(named, "rr.edge.example", [ADDR1, ADDR2])
    assert named.dig("rr.edge.example", "TXT") == sorted([_txt("edge-1", ADDR1),
                                                          _txt("edge-2", ADDR2)])
    time.sleep(2)                                   # several full passes on both nodes
    assert named.dig_ttl("rr.edge.example") == [60, 60]
    for a in (a1, a2):
        assert len(re.findall(r"\d+ changed in", a.stderr())) == 1, a.stderr()
    # node 1 stops publishing the host: node 2's address stays
    helpers.write_atomic(os.path.join(one, "all.yaml"), helpers.dump_docs(_docs()))
    wait_records(named, "rr.edge.example", [ADDR2])
    assert named.dig("rr.edge.example", "TXT") == [_txt("edge-2", ADDR2)]
    assert a1.alive() and a2.alive()


def test_resync_repairs_drift(env, named):
    config = _config(env, named, resync="1s", hosts=False)
    env.write_manifests(_docs(_ing("web", ["keep.edge.example"])))
    _start(env, config)
    wait_records(named, "keep.edge.example", [ADDR1])
    # someone deletes our record: the resync puts it back
    named.nsupdate("update delete keep.edge.example. A")
    assert named.dig("keep.edge.example") == []
    wait_records(named, "keep.edge.example", [ADDR1], timeout=5)
    # a stale address of ours (the node's old address, listed in our TXT) goes away
    named.nsupdate("update delete keep.edge.example. TXT",
                   "update add keep.edge.example. 60 A 192.0.2.99",
                   "update add keep.edge.example. 60 TXT %s" % _txt("edge-1", ADDR1,
                                                                    "192.0.2.99"))
    wait_records(named, "keep.edge.example", [ADDR1], timeout=5)
    assert named.dig("keep.edge.example", "TXT") == [_txt("edge-1", ADDR1)]


def test_removal_survives_a_restart(env, named):
    config = _config(env, named, hosts=False)
    env.write_manifests(_docs(_ing("web", ["gone.edge.example"])))
    p = env.run_agent_once(["--config", config])
    assert p.p.returncode == 0, p.stderr()
    assert named.dig("gone.edge.example") == [ADDR1]
    env.write_manifests(_docs())
    p = env.run_agent_once(["--config", config])
    assert named.dig("gone.edge.example") == []
    assert named.dig("gone.edge.example", "TXT") == []


def test_bad_dns_config_is_a_clear_error(env, named):
    cfg = {"node": {"name": "edge-1", "address": ADDR1},
           "dns": [{"type": "rfc2136", "server": named.server, "zone": "edge.example.",
                    "tsig": {"name": "gatehouse", "algorithm": "hmac-md5",
                             "secret": named.secret}}]}
    path = env.write_config(yaml.safe_dump(cfg))
    env.write_manifests(_docs())
    p = env.run_agent_once(["--config", path])
    assert p.p.returncode == 2
    assert 'dns[0].tsig: TSIG algorithm "hmac-md5" is not supported' in p.stderr(), p.stderr()
    assert not os.path.exists(env.routes)       # a config error stops the agent before work
    assert named.secret not in p.stderr()


def test_two_nodes_racing_on_fresh_names(env, named):
    """Both nodes read the same 200 fresh names, then update: whoever comes second finds its
    prerequisites broken (the other node's TXT appeared), reads again and adds itself. Every
    name ends with both addresses and both ownership records, whatever the interleaving."""
    hosts = ["race-%03d.edge.example" % i for i in range(200)]
    env.write_manifests(_docs(*[_ing("r%03d" % i, [h]) for i, h in enumerate(hosts)]))
    procs = []
    for i, addr in ((1, ADDR1), (2, ADDR2)):
        config = _config(env, named, name="edge-%d" % i, address=addr, hosts=False,
                         filename="c%d.yaml" % i)
        procs.append(_agent(env, config, os.path.join(env.base, "s%d" % i), once=True))
    for p in procs:
        assert p.wait(60) == 0, p.stderr()
        assert "error" not in p.stderr(), p.stderr()
    records = named.axfr()
    for h in hosts:
        got_a = sorted(v for n, t, v in records if n == h + "." and t == "A")
        got_txt = sorted(v for n, t, v in records if n == h + "." and t == "TXT")
        assert got_a == [ADDR1, ADDR2], (h, got_a)
        assert got_txt == [_txt("edge-1", ADDR1), _txt("edge-2", ADDR2)], (h, got_txt)
    print("prerequisite conflicts retried by each node: %s" % [
        re.findall(r"(\d+) conflicts retried", p.stderr()) for p in procs])


def test_names_under_wildcards(env, named):
    """A query for a name under a wildcard is answered from the wildcard; prerequisites and
    updates see only what the name itself owns. Names under our own wildcard and under a
    foreign one are published and withdrawn correctly, and full resyncs stay quiet."""
    named.nsupdate("update add *.other.edge.example. 60 A 198.51.100.9")
    config = _config(env, named, resync="1s", hosts=False)
    env.write_manifests(_docs(_ing("web", ["*.apps.edge.example", "a.apps.edge.example",
                                           "x.other.edge.example"])))
    agent = _start(env, config)
    wait_records(named, "x.other.edge.example", [ADDR1])
    wait_records(named, "a.apps.edge.example", [ADDR1])
    assert named.dig("a.apps.edge.example", "TXT") == [_txt("edge-1", ADDR1)]
    assert named.dig("b.other.edge.example") == ["198.51.100.9"]
    time.sleep(2.5)                                 # two full passes
    env.write_manifests(_docs(_ing("web", ["*.apps.edge.example"])))
    wait_records(named, "x.other.edge.example", ["198.51.100.9"])   # the wildcard again
    assert named.dig("x.other.edge.example", "TXT") == []
    records = named.axfr()
    assert [r for r in records if r[0] == "a.apps.edge.example."] == []
    assert named.dig("a.apps.edge.example") == [ADDR1]             # from *.apps
    time.sleep(2.5)
    err = agent.stderr()
    assert "error" not in err and "does not own" not in err, err


def test_refused_update_is_reported_and_retried(env, tmp_path):
    """The key may only change names below ok.edge.example: the server answers REFUSED for the
    others, which is logged with the reason and retried with back-off; routing goes on."""
    n = Named(tmp_path, policy="grant %s subdomain ok.edge.example. ANY;" % KEY_NAME).start()
    try:
        config = _config(env, n, hosts=False)
        env.write_manifests(_docs(_ing("web", ["denied.edge.example"])))
        agent = _start(env, config)
        wait_until(lambda: len(re.findall("REFUSED to the UPDATE for 1 name "
                                          r"\(denied.edge.example\)", agent.stderr())) >= 2,
                   10, what="REFUSED to be logged and retried")
        assert "retrying in 1 s" in agent.stderr() and "retrying in 2 s" in agent.stderr()
        # a refused name does not hold up the others, nor routing
        env.write_manifests(_docs(_ing("web", ["denied.edge.example", "a.ok.edge.example",
                                               "b.ok.edge.example"])))
        wait_until(lambda: "a.ok.edge.example" in open(env.routes).read(), 5,
                   what="routing to go on")
        wait_records(n, "a.ok.edge.example", [ADDR1])
        wait_records(n, "b.ok.edge.example", [ADDR1])
        assert n.dig("denied.edge.example") == []
    finally:
        n.stop()


def test_wildcards_can_be_left_out(env, named):
    config = _config(env, named, hosts=False, wildcards=False)
    env.write_manifests(_docs(_ing("web", ["*.apps.edge.example", "a.apps.edge.example"])))
    p = env.run_agent_once(["--config", config])
    assert p.p.returncode == 0, p.stderr()
    assert named.dig("a.apps.edge.example") == [ADDR1]
    assert named.dig("*.apps.edge.example") == []
    assert named.dig("b.apps.edge.example") == []
