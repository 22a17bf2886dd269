"""Ingress status published by gatehouse-agent's cluster source (agent/kube_status.h): every agent
keeps a heartbeat Lease "gatehouse-node-<name>"; the holder of Lease "gatehouse-status-leader"
puts the live nodes' addresses in status.loadBalancer.ingress of the Ingresses it serves, and
only when they differ. Also: what an RBAC refusal looks like to an operator, and that
docs/rbac.yaml grants everything the agent does.

The agents run against the fake API server of cluster.py with fast Lease timings (FAST). Every
agent here has its own state folder (start_node), so two of them can run side by side; no proxy
is needed for status. The agents and kubectl authenticate as different users (users fixture), so
srv.requests tells who sent what."""
import copy
import json
import os
import re
import signal
import time

import pytest
import yaml

from cluster import (AGENT_TOKEN, KUBECTL_TOKEN, SYNCED_LOG, agent_config, cluster,  # noqa: F401
                     ingress_doc)
from conftest import AGENT, ROOT, Proc, _binary
from fake_apiserver import ApiError
from helpers import wait_until

FAST = {"kubernetes": {"leaseDuration": "3s", "renewDeadline": "2s", "retryPeriod": "1s"}}
AGENT_USER = "system:serviceaccount:gatehouse:gatehouse-agent"   # docs/rbac.yaml's account
ADMIN = "kubernetes-admin"                                        # kubectl's user
LEADER = "gatehouse-status-leader"
ING = "/apis/networking.k8s.io/v1/namespaces/default/ingresses"
NODES = {"edge-1": "192.0.2.10", "edge-2": "192.0.2.11"}
RBAC_YAML = os.path.join(ROOT, "docs", "rbac.yaml")


# ---------------------------------------------------------------- local helpers

def node_user(node):
    return "system:serviceaccount:gatehouse:" + node


@pytest.fixture
def users(cluster):
    """One user per client: the default agent token, one token per edge node, kubectl."""
    tokens = {AGENT_TOKEN: AGENT_USER, KUBECTL_TOKEN: ADMIN}
    for n in NODES:
        tokens["token-" + n] = node_user(n)
    cluster.srv.set_tokens(tokens)
    return cluster


def _merge(base, extra):
    out = copy.deepcopy(base)
    for k, v in (extra or {}).items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


class Node:
    """One gatehouse-agent with a state folder of its own."""

    def __init__(self, name, address, proc, state, user):
        self.name, self.address, self.proc, self.state, self.user = name, address, proc, state, user

    @property
    def routes(self):
        return os.path.join(self.state, "routes.yaml")

    def stderr(self):
        return self.proc.stderr()

    def metric(self, name):
        """An unlabelled sample of STATE/metrics.prom, or None."""
        try:
            with open(os.path.join(self.state, "metrics.prom")) as f:
                text = f.read()
        except OSError:
            return None
        m = re.search(r"^%s (\S+)$" % re.escape(name), text, re.M)
        return float(m.group(1)) if m else None

    def leader_gauge(self):
        return self.metric("gatehouse_agent_status_leader")


def start_node(env, cluster, node="edge-1", address=None, publish=True, extra=None,
               token=None, wait=True, timeout=15):
    """gatehouse-agent --kubeconfig KC --state-dir ENV/state-NODE --config CFG, the config with
    FAST Lease timings (deep-merged with extra). token: its own kubeconfig with this token (its
    user is then users' node_user(node)); else cluster's default kubeconfig (AGENT_USER)."""
    address = address or NODES.get(node, "192.0.2.10")
    state = os.path.join(env.base, "state-" + node)
    os.makedirs(state, exist_ok=True)
    kc = cluster.kubeconfig(name="kubeconfig-" + node, auth={"token": token}) if token \
        else cluster.kubeconfig_path
    cfg = agent_config(env, cluster, name=node, config_extra=_merge(FAST, extra), node_name=node,
                       address=address, publish_status=publish, kubeconfig=kc)
    argv = [_binary(AGENT), "--kubeconfig", kc, "--state-dir", state, "--config", cfg]
    p = Proc(env._name("agent-" + node), argv, env.logs)
    env.procs.append(p)
    n = Node(node, address, p, state, node_user(node) if token else AGENT_USER)
    if wait:
        def synced():
            assert p.alive(), "gatehouse-agent %s exited rc=%s: %s" % (node, p.p.poll(),
                                                                       p.stderr()[-2000:])
            return SYNCED_LOG in p.stderr() and os.path.exists(n.routes)
        wait_until(synced, timeout, interval=0.05, what="%s's first complete listing" % node)
    return n


def seed(cluster):
    """IngressClass gatehouse (ours) and other (another controller), Service web, Ingress web
    (served) and Ingress foreign (class other, with a status of its own)."""
    cluster.add_class()
    cluster.add_class("other", controller="example.com/other-controller")
    cluster.add_service("web", ["127.0.0.1:9"])
    cluster.put_ingress("web", "web.test", "/", "web")
    foreign = ingress_doc("foreign", "foreign.test", "/", "web", cls="other")
    foreign["status"] = {"loadBalancer": {"ingress": [{"hostname": "lb.other.example"}]}}
    cluster.put(foreign)


def lb(cluster, name, ns="default"):
    """status.loadBalancer.ingress as stored ([] when absent)."""
    obj = cluster.srv.get("ingresses", ns, name)
    return ((obj or {}).get("status") or {}).get("loadBalancer", {}).get("ingress") or []


def kubectl_lb(cluster, name):
    """status.loadBalancer.ingress as `kubectl get -o json` shows it."""
    obj = cluster.kubectl.json("get", "ingress", name)
    return (obj.get("status") or {}).get("loadBalancer", {}).get("ingress") or []


def ips(*addresses):
    return [{"ip": a} for a in sorted(addresses)]


def requests(cluster, method=None, path_re=None, user=None):
    return [r for r in list(cluster.srv.requests)
            if (method is None or r[0] == method) and (user is None or r[2] == user) and
            (path_re is None or re.search(path_re, r[1]))]


def status_patches(cluster, name=None, user=None):
    return requests(cluster, "PATCH", r"/ingresses/%s/status(\?|$)"
                    % (re.escape(name) if name else "[^/?]+"), user)


def holder(cluster, ns="default"):
    lease = cluster.srv.get("leases", ns, LEADER)
    return None if lease is None else lease.get("spec", {}).get("holderIdentity")


def wait_status(cluster, name, want, timeout=20, kubectl=False):
    get = kubectl_lb if kubectl else lb
    wait_until(lambda: get(cluster, name) == want, timeout, interval=0.1,
               what="Ingress %s status %r (now %r)" % (name, want, get(cluster, name)))


def set_status_as_user(cluster, name, entries):
    """What a user (or another controller) does: write the status subresource with kubectl
    (patch --subresource=status, or replace --raw on kubectl without it, e.g. 1.20)."""
    kc = cluster.kubectl
    status = {"loadBalancer": {"ingress": entries}}
    if kc.supports_subresource():
        kc.run("patch", "ingress", name, "--subresource=status", "--type=merge",
               "-p", json.dumps({"status": status}))
    else:
        obj = kc.json("get", "ingress", name)
        obj["status"] = status
        kc.run("replace", "--raw", "%s/%s/status" % (ING, name), "-f", "-",
               input=json.dumps(obj))


def count_lines(text, needle):
    return sum(1 for line in text.splitlines() if needle in line)


# ---------------------------------------------------------------- one agent

def test_served_ingress_gets_node_address_other_class_untouched(env, users):
    cluster = users
    seed(cluster)
    node = start_node(env, cluster, "edge-1")
    wait_status(cluster, "web", ips("192.0.2.10"), kubectl=True)

    beat = cluster.srv.get("leases", "default", "gatehouse-node-edge-1")
    assert beat["metadata"]["labels"]["gatehouse.dev/heartbeat"] == "true", beat
    assert beat["metadata"]["annotations"]["gatehouse.dev/addresses"] == "192.0.2.10", beat
    assert holder(cluster) == "edge-1"

    # later renders (a new served Ingress, a change to the one already right) patch only what
    # differs: web2 once, web never again
    cluster.put_ingress("web2", "web2.test", "/", "web")
    cluster.kubectl.run("annotate", "ingress", "web", "example.com/touched=yes")
    wait_status(cluster, "web2", ips("192.0.2.10"))
    wait_until(lambda: "web2.test" in open(node.routes).read(), 10, what="web2 rendered")
    time.sleep(3.5)   # three more leader periods: each one compares again
    assert len(status_patches(cluster, "web")) == 1, status_patches(cluster, "web")
    assert len(status_patches(cluster, "web2")) == 1, status_patches(cluster, "web2")

    # the other controller's Ingress: never a request, its status as it was
    assert status_patches(cluster, "foreign") == []
    assert requests(cluster, path_re=r"/ingresses/foreign") == []
    assert kubectl_lb(cluster, "foreign") == [{"hostname": "lb.other.example"}]
    assert "foreign" not in node.stderr()


def test_leader_gauge_without_ingresses(env, users):
    """Becoming leader shows in metrics.prom even when no render follows (nothing to patch):
    the file is otherwise rewritten only after renders and changes of the informers' counters."""
    cluster = users
    cluster.add_class()
    node = start_node(env, cluster, "edge-1")
    wait_until(lambda: holder(cluster) == "edge-1", 10, what="edge-1 to hold the leader Lease")
    wait_until(lambda: node.leader_gauge() == 1, 10,
               what="gatehouse_agent_status_leader 1 (now %r)" % node.leader_gauge())


def test_user_changed_status_is_put_back(env, users):
    cluster = users
    seed(cluster)
    node = start_node(env, cluster, "edge-1")
    wait_status(cluster, "web", ips("192.0.2.10"))
    before = len(status_patches(cluster, "web", AGENT_USER))
    set_status_as_user(cluster, "web", [{"ip": "203.0.113.99"}])
    assert requests(cluster, method=None, path_re=r"/ingresses/web/status(\?|$)", user=ADMIN), \
        "kubectl did not write the status subresource"
    wait_status(cluster, "web", ips("192.0.2.10"), kubectl=True)
    assert len(status_patches(cluster, "web", AGENT_USER)) == before + 1
    assert node.proc.alive()


def test_publish_status_off_sends_no_lease_or_status_request(env, users):
    cluster = users
    seed(cluster)
    node = start_node(env, cluster, "edge-1", publish=False)
    cluster.put_ingress("web2", "web2.test", "/", "web")
    wait_until(lambda: "web2.test" in open(node.routes).read(), 10, what="web2 rendered")
    time.sleep(3)     # three retry periods of the FAST config
    assert requests(cluster, path_re=r"/leases") == []
    assert cluster.srv.objects("leases") == []
    assert requests(cluster, "PATCH") == [] and requests(cluster, "PUT") == [] and \
        requests(cluster, "POST") == []
    assert lb(cluster, "web") == []
    assert node.leader_gauge() in (0, None)
    assert "publishing Ingress status" not in node.stderr()


def test_other_heartbeats_hostnames_and_untrusted_addresses(env, users):
    """Another node's heartbeat Lease (as written by anyone with Lease access): its IPs go in
    "ip", DNS names in "hostname", anything else is dropped; Ingresses in every namespace get
    them; a deleted heartbeat takes its addresses out again."""
    cluster = users
    seed(cluster)
    cluster.put_ingress("api", "api.test", "/", "web", ns="team-a")
    cluster.put({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {
        "name": "gatehouse-node-edge-9", "namespace": "default",
        "labels": {"gatehouse.dev/heartbeat": "true"},
        "annotations": {"gatehouse.dev/addresses":
                        " lb.example.com,198.51.100.7 ,not valid!,{\"ip\":\"6.6.6.6\"},"}},
        "spec": {"holderIdentity": "edge-9", "leaseDurationSeconds": 3600,
                 "renewTime": "2026-01-01T00:00:00.000000Z"}})
    start_node(env, cluster, "edge-1")
    want = [{"hostname": "lb.example.com"}, {"ip": "192.0.2.10"}, {"ip": "198.51.100.7"}]

    def shows(name, ns, entries):
        return sorted(lb(cluster, name, ns), key=json.dumps) == entries
    wait_until(lambda: shows("web", "default", want) and shows("api", "team-a", want), 20,
               interval=0.1, what="both Ingresses show %r (now %r, %r)"
               % (want, lb(cluster, "web"), lb(cluster, "api", "team-a")))
    cluster.delete("leases", "gatehouse-node-edge-9")
    wait_status(cluster, "web", ips("192.0.2.10"))
    wait_until(lambda: lb(cluster, "api", "team-a") == ips("192.0.2.10"), 20, interval=0.1,
               what="team-a/api back to the node's address alone")
    assert status_patches(cluster, "foreign") == []


def test_leader_steps_down_when_another_holds_the_lease(env, users):
    """Someone else writes itself into the leader Lease (another agent that saw it expire): this
    agent stops writing status, and a status changed meanwhile stays as it is."""
    cluster = users
    seed(cluster)
    node = start_node(env, cluster, "edge-1")
    wait_status(cluster, "web", ips("192.0.2.10"))
    lease = cluster.srv.get("leases", "default", LEADER)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
    lease["spec"].update(holderIdentity="edge-7", renewTime=stamp, leaseDurationSeconds=3600)
    cluster.put(lease)
    wait_until(lambda: "stops publishing Ingress status" in node.stderr(), 10,
               what="edge-1 to step down")
    before = len(status_patches(cluster, user=AGENT_USER))
    set_status_as_user(cluster, "web", [{"ip": "203.0.113.7"}])
    time.sleep(3)
    assert len(status_patches(cluster, user=AGENT_USER)) == before
    assert lb(cluster, "web") == [{"ip": "203.0.113.7"}]
    assert holder(cluster) == "edge-7"
    assert node.proc.alive()


def test_api_outage_steps_down_then_leads_again(env, users):
    """A leader that cannot renew within renewDeadline stops writing status; when the API server
    is back it takes the Lease again and repairs what changed meanwhile."""
    cluster = users
    seed(cluster)
    node = start_node(env, cluster, "edge-1")
    wait_status(cluster, "web", ips("192.0.2.10"))
    cluster.srv.stop()
    wait_until(lambda: "stops publishing Ingress status" in node.stderr(), 15,
               what="edge-1 to step down during the outage")
    obj = cluster.srv.get("ingresses", "default", "web")
    obj["status"] = {"loadBalancer": {"ingress": [{"ip": "203.0.113.8"}]}}
    cluster.put(obj)
    cluster.srv.start()
    wait_status(cluster, "web", ips("192.0.2.10"), timeout=30)
    assert count_lines(node.stderr(), "now publishes Ingress status") == 2
    assert node.proc.alive()


def test_leases_in_the_kubeconfig_namespace(env, users):
    """Without kubernetes.leaseNamespace the Leases go in the kubeconfig context's namespace."""
    cluster = users
    cluster.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "edge"}})
    seed(cluster)
    kc = cluster.kubeconfig(name="kubeconfig-ns", namespace="edge")
    state = os.path.join(env.base, "state-ns")
    os.makedirs(state)
    cfg = agent_config(env, cluster, name="ns", config_extra=FAST, publish_status=True,
                       kubeconfig=kc)
    p = Proc(env._name("agent-ns"), [_binary(AGENT), "--kubeconfig", kc, "--state-dir", state,
                                     "--config", cfg], env.logs)
    env.procs.append(p)
    wait_status(cluster, "web", ips("192.0.2.10"))
    assert holder(cluster, "edge") == "edge-1"
    assert cluster.srv.get("leases", "edge", "gatehouse-node-edge-1") is not None
    assert cluster.srv.objects("leases", "default") == []


# ---------------------------------------------------------------- two agents

def two_nodes(env, cluster, extra=None):
    seed(cluster)
    nodes = {n: start_node(env, cluster, n, token="token-" + n, extra=extra) for n in NODES}
    wait_status(cluster, "web", ips(*NODES.values()), kubectl=True)
    lead = holder(cluster)
    assert lead in nodes, lead
    other = [n for n in nodes if n != lead][0]
    return nodes, nodes[lead], nodes[other]


def test_two_agents_one_leader_and_takeover_after_kill(env, users):
    cluster = users
    nodes, lead, follower = two_nodes(env, cluster)
    wait_until(lambda: lead.leader_gauge() == 1 and follower.leader_gauge() == 0, 10,
               what="leader gauges 1/0 (now %r/%r)" % (lead.leader_gauge(),
                                                       follower.leader_gauge()))
    assert status_patches(cluster, user=follower.user) == []
    assert status_patches(cluster, user=lead.user)
    assert status_patches(cluster, "foreign") == []
    steady = len(status_patches(cluster))
    time.sleep(3)     # heartbeats renewed three times: the set is the same, so no request
    assert len(status_patches(cluster)) == steady, status_patches(cluster)

    t0 = time.monotonic()
    lead.proc.signal(signal.SIGKILL)
    lead.proc.wait(5)
    wait_until(lambda: holder(cluster) == follower.name, 20,
               what="%s to take the leader Lease over (holder %r)" % (follower.name,
                                                                     holder(cluster)))
    took = time.monotonic() - t0
    wait_status(cluster, "web", ips(follower.address), timeout=25, kubectl=True)
    gone = time.monotonic() - t0
    print("takeover after %.1fs, dead address gone after %.1fs" % (took, gone))
    assert status_patches(cluster, "web", follower.user)
    wait_until(lambda: follower.leader_gauge() == 1, 10, what="new leader's gauge 1")
    assert status_patches(cluster, "foreign") == []
    assert follower.proc.alive()


def test_graceful_stop_releases_leadership(env, users):
    # a Lease duration far longer than the wait below: only a release explains a quick takeover
    slow = {"kubernetes": {"leaseDuration": "40s", "renewDeadline": "20s", "retryPeriod": "1s"}}
    cluster = users
    nodes, lead, follower = two_nodes(env, cluster, extra=slow)
    t0 = time.monotonic()
    lead.proc.signal(signal.SIGTERM)
    assert lead.proc.wait(10) == 0
    assert "released lease %s" % LEADER in lead.stderr(), lead.stderr()[-2000:]
    released = [r for r in requests(cluster, "PUT", r"/leases/%s$" % LEADER, lead.user)]
    assert released, "no PUT of the leader Lease by %s" % lead.name
    wait_until(lambda: holder(cluster) == follower.name, 10,
               what="%s to take over the released Lease (holder %r)" % (follower.name,
                                                                       holder(cluster)))
    print("takeover %.1fs after SIGTERM" % (time.monotonic() - t0))
    assert follower.proc.alive()


# ---------------------------------------------------------------- RBAC

def test_forbidden_list_is_one_clear_line_until_allowed(env, users):
    cluster = users
    seed(cluster)
    cluster.srv.deny(AGENT_USER, "list", "ingresses")
    node = start_node(env, cluster, "edge-1", wait=False)
    lists = r"/ingresses(\?(?!.*watch=)|$)"
    wait_until(lambda: len(requests(cluster, "GET", lists, AGENT_USER)) >= 3, 30,
               what="3 attempts to list ingresses")
    err = node.stderr()
    lines = [l for l in err.splitlines() if "refused to list" in l]
    assert len(lines) == 1, err
    line = lines[0]
    assert "ingresses" in line and 'cannot list resource "ingresses"' in line, line
    assert "docs/rbac.yaml" in line, line
    assert not os.path.exists(node.routes), "routes written from an incomplete listing"
    assert node.proc.alive()

    cluster.srv.allow_all()
    wait_until(lambda: os.path.exists(node.routes) and "web.test" in open(node.routes).read(),
               30, what="routes once the listing is allowed")
    assert count_lines(node.stderr(), "refused to list") == 1


def test_forbidden_status_patch_is_one_line_routing_unaffected(env, users):
    cluster = users
    seed(cluster)
    cluster.srv.deny(AGENT_USER, "patch", "ingresses/status")
    node = start_node(env, cluster, "edge-1")
    wait_until(lambda: len(status_patches(cluster, "web")) >= 3, 15,
               what="3 status patch attempts")
    err = node.stderr()
    lines = [l for l in err.splitlines() if "status" in l and "default/web" in l]
    assert len(lines) == 1, err
    assert "403" in lines[0] and 'cannot patch resource "ingresses/status"' in lines[0], lines
    assert "web.test" in open(node.routes).read()
    assert lb(cluster, "web") == []

    cluster.srv.allow_all()
    wait_status(cluster, "web", ips("192.0.2.10"))
    assert node.proc.alive()


def test_forbidden_leases_logged_once_no_status_written(env, users):
    """Without write access to Leases the agent cannot lead: one line per Lease, no Ingress
    status request, routes written as usual."""
    cluster = users
    seed(cluster)
    cluster.srv.deny(AGENT_USER, "create", "leases")
    node = start_node(env, cluster, "edge-1")
    wait_until(lambda: len(requests(cluster, "POST", r"/leases$", AGENT_USER)) >= 6, 15,
               what="several attempts to create the Leases")
    err = node.stderr()
    beat = [l for l in err.splitlines() if "gatehouse-node-edge-1" in l]
    lead = [l for l in err.splitlines() if LEADER in l]
    assert len(beat) == 1 and "403" in beat[0], err
    assert len(lead) == 1 and "403" in lead[0], err
    assert status_patches(cluster) == []
    assert "web.test" in open(node.routes).read()


# ---- docs/rbac.yaml against what the agent does

def rbac_grants(path):
    """(user, [(namespace or None, apiGroups, resources, verbs)]) of the ServiceAccount that
    docs/rbac.yaml binds (None: every namespace, through a ClusterRoleBinding)."""
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    sas = [d for d in docs if d["kind"] == "ServiceAccount"]
    assert len(sas) == 1, sas
    sa = sas[0]["metadata"]
    roles = {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d["rules"]
             for d in docs if d["kind"] in ("ClusterRole", "Role")}
    grants = []
    for b in docs:
        if b["kind"] not in ("ClusterRoleBinding", "RoleBinding"):
            continue
        if not any(s.get("kind") == "ServiceAccount" and s["name"] == sa["name"] and
                   s.get("namespace") == sa["namespace"] for s in b["subjects"]):
            continue
        ref = b["roleRef"]
        scope = b["metadata"].get("namespace") if b["kind"] == "RoleBinding" else None
        rules = roles[(ref["kind"], scope if ref["kind"] == "Role" else None, ref["name"])]
        grants += [(scope, r["apiGroups"], r["resources"], r["verbs"]) for r in rules]
    return "system:serviceaccount:%s:%s" % (sa["namespace"], sa["name"]), grants


def rbac_allows(grants, verb, group, resource, ns):
    return any((scope is None or scope == ns) and (group in groups or "*" in groups) and
               (resource in resources or "*" in resources) and (verb in verbs or "*" in verbs)
               for scope, groups, resources, verbs in grants)


def test_rbac_yaml_grants_everything_the_agent_does(env, users):
    """The fake server enforces docs/rbac.yaml for the agent's account (everything else 403),
    and a full run - list, watch, heartbeat and leader Leases, status patches, release - works
    with no refusal."""
    cluster = users
    user, grants = rbac_grants(RBAC_YAML)
    assert user == AGENT_USER
    used, refused = set(), []
    srv = cluster.srv
    allow_check = srv._authorize

    def authorize(u, verb, res, sub, ns, name):
        if u == user:
            rname = res.name + ("/" + sub if sub else "")
            used.add((verb, res.group, rname, ns))
            if not rbac_allows(grants, verb, res.group, rname, ns):
                refused.append((verb, res.group, rname, ns, name))
                raise ApiError(403, "Forbidden", '%s is forbidden: User "%s" cannot %s resource '
                               '"%s" in API group "%s" (docs/rbac.yaml)'
                               % (res.qualified, u, verb, rname, res.group))
        return allow_check(u, verb, res, sub, ns, name)
    srv._authorize = authorize

    # the Role for Leases lives in the agent's namespace (kubernetes.leaseNamespace)
    cluster.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "gatehouse"}})
    seed(cluster)
    node = start_node(env, cluster, "edge-1", extra={"kubernetes": {"leaseNamespace": "gatehouse"}})
    wait_status(cluster, "web", ips("192.0.2.10"))
    cluster.put_ingress("web2", "web2.test", "/", "web")
    wait_status(cluster, "web2", ips("192.0.2.10"))
    assert holder(cluster, "gatehouse") == "edge-1"
    node.proc.signal(signal.SIGTERM)
    assert node.proc.wait(10) == 0
    assert "released lease" in node.stderr()

    print("verbs used: %s" % sorted(used, key=str))
    assert refused == [], "docs/rbac.yaml does not grant: %r" % refused
    for want in [("list", "networking.k8s.io", "ingresses"),
                 ("watch", "networking.k8s.io", "ingresses"),
                 ("patch", "networking.k8s.io", "ingresses/status"),
                 ("create", "coordination.k8s.io", "leases"),
                 ("update", "coordination.k8s.io", "leases")]:
        assert any(u[:3] == want for u in used), "the run never did %r: %r" % (want, used)
    for line in node.stderr().splitlines():
        assert "forbidden" not in line.lower(), line
