"""A fake Kubernetes API server for the integration tests: enough of the real one's HTTP API that
kubectl (1.20 and 1.32) and the gatehouse agent work against it, with fault injection.

Standard library only. Objects live in memory as JSON dicts (never mutated once stored, so a
response can serialize them without copying); one global resourceVersion counter; an event ring
for watch resumes. The server runs in a thread of the test process (FakeApiServer) so a test can
change state directly, inject faults, cut connections and restart on the same port; or standalone:

    python3 fake_apiserver.py --port 6443 --cert server.crt --key server.key --token T

Out of scope: protobuf, Table output (kubectl prints its own default columns), server-side apply
(415), admission, validation beyond metadata.name, managedFields."""
import argparse
import base64
import collections
import copy
import http.server
import json
import os
import queue
import random
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid

DEFAULT_TOKEN_USER = "system:serviceaccount:gatehouse:agent"
ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


# ---------------------------------------------------------------- resource table

class Resource:
    """One API resource as discovery describes it, plus the storage rules the real server's
    strategy for it applies (status subresource, generation)."""

    def __init__(self, group, version, name, kind, namespaced, short=(), status=False,
                 generation=False, categories=(), singular=None, create_on_update=False,
                 verbs=ALL_VERBS):
        self.group, self.version, self.name, self.kind = group, version, name, kind
        self.namespaced = namespaced
        self.short = list(short)
        self.status = status
        self.generation = generation
        self.categories = list(categories)
        self.singular = singular or kind.lower()
        self.create_on_update = create_on_update
        self.verbs = list(verbs)

    @property
    def api_version(self):
        return "%s/%s" % (self.group, self.version) if self.group else self.version

    @property
    def qualified(self):
        """How error messages name it: "ingresses.networking.k8s.io", "services"."""
        return "%s.%s" % (self.name, self.group) if self.group else self.name

    def details(self, name=None):
        d = {}
        if name is not None:
            d["name"] = name
        if self.group:
            d["group"] = self.group
        d["kind"] = self.name
        return d


RESOURCES = [
    Resource("", "v1", "namespaces", "Namespace", False, ("ns",),
             verbs=["create", "delete", "get", "list", "patch", "update", "watch"]),
    Resource("", "v1", "services", "Service", True, ("svc",), status=True, categories=("all",)),
    Resource("", "v1", "secrets", "Secret", True),
    Resource("", "v1", "configmaps", "ConfigMap", True, ("cm",)),
    Resource("networking.k8s.io", "v1", "ingresses", "Ingress", True, ("ing",), status=True,
             generation=True, categories=("all",)),
    Resource("networking.k8s.io", "v1", "ingressclasses", "IngressClass", False,
             generation=True),
    Resource("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True,
             generation=True),
    Resource("coordination.k8s.io", "v1", "leases", "Lease", True, create_on_update=True),
]
BY_NAME = {r.name: r for r in RESOURCES}
GROUP_VERSIONS = []          # ordered, unique "group/version" ("" group first)
for _r in RESOURCES:
    if (_r.group, _r.version) not in GROUP_VERSIONS:
        GROUP_VERSIONS.append((_r.group, _r.version))


def _lookup(group, version, name):
    r = BY_NAME.get(name)
    if r is None or r.group != group or r.version != version:
        return None
    return r


def _resource_for(obj):
    """The Resource of a whole object (by apiVersion and kind), for the direct state helpers."""
    for r in RESOURCES:
        if r.kind == obj.get("kind") and r.api_version == obj.get("apiVersion"):
            return r
    raise ValueError("fake apiserver does not serve %s %s" % (obj.get("apiVersion"),
                                                               obj.get("kind")))


def _resolve(resource):
    if isinstance(resource, Resource):
        return resource
    r = BY_NAME.get(resource)
    if r is None:
        for x in RESOURCES:
            if resource in (x.kind, x.singular) or resource in x.short:
                return x
        raise ValueError("unknown resource %r" % resource)
    return r


# ---------------------------------------------------------------- errors

def status_body(code, reason, message, details=None):
    d = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
         "message": message, "reason": reason}
    if details:
        d["details"] = details
    d["code"] = code
    return d


class ApiError(Exception):
    def __init__(self, code, reason, message, details=None, headers=()):
        super().__init__(message)
        self.body = status_body(code, reason, message, details)
        self.code = code
        self.headers = list(headers)


def not_found(res, name):
    return ApiError(404, "NotFound", '%s "%s" not found' % (res.qualified, name),
                    res.details(name))


def bad_request(msg):
    return ApiError(400, "BadRequest", msg)


def invalid(res, name, field, cause_reason, msg):
    return ApiError(422, "Invalid", '%s.%s "%s" is invalid: %s: %s' % (
        res.kind, res.group, name, field, msg) if res.group else
        '%s "%s" is invalid: %s: %s' % (res.kind, name, field, msg),
        {"name": name, "group": res.group, "kind": res.kind,
         "causes": [{"reason": cause_reason, "message": msg, "field": field}]})


def conflict(res, name):
    return ApiError(409, "Conflict", 'Operation cannot be fulfilled on %s "%s": the object has '
                    'been modified; please apply your changes to the latest version and try again'
                    % (res.qualified, name), res.details(name))


FAULT_REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
                 409: "Conflict", 410: "Expired", 422: "Invalid", 429: "TooManyRequests",
                 500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout"}


# ---------------------------------------------------------------- selectors

def _split_top(s):
    """Splits on commas outside parentheses ("a in (x,y),b" -> 2 parts)."""
    parts, depth, cur = [], 0, ""
    for ch in s:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


_SET_REQ = re.compile(r"^([A-Za-z0-9_./-]+)\s+(in|notin)\s+\((.*)\)$")
_KEY = re.compile(r"^[A-Za-z0-9_./-]+$")


def parse_label_selector(s):
    reqs = []
    for part in _split_top(s or ""):
        m = _SET_REQ.match(part)
        if m:
            reqs.append((m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",")}))
            continue
        for op in ("!=", "==", "="):
            if op in part:
                k, v = part.split(op, 1)
                k, v = k.strip(), v.strip()
                if not _KEY.match(k):
                    raise bad_request("unable to parse requirement: invalid label key %r" % k)
                reqs.append((k, "!=" if op == "!=" else "=", v))
                break
        else:
            neg = part.startswith("!")
            k = part[1:].strip() if neg else part
            if not _KEY.match(k):
                raise bad_request("unable to parse requirement: invalid label key %r" % k)
            reqs.append((k, "!" if neg else "exists", None))
    return reqs


def labels_match(reqs, obj):
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for k, op, v in reqs:
        has = k in labels
        val = labels.get(k)
        if op == "=" and val != v:
            return False
        if op == "!=" and has and val == v:
            return False
        if op == "exists" and not has:
            return False
        if op == "!" and has:
            return False
        if op == "in" and val not in v:
            return False
        if op == "notin" and has and val in v:
            return False
    return True


def parse_field_selector(s):
    reqs = []
    for part in _split_top(s or ""):
        for op in ("!=", "==", "="):
            if op in part:
                k, v = part.split(op, 1)
                reqs.append((k.strip(), op != "!=", v.strip()))
                break
        else:
            raise bad_request('invalid selector: \'%s\'; can\'t understand \'%s\'' % (s, part))
    return reqs


def _field(obj, path):
    cur = obj
    for p in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(p)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def fields_match(reqs, obj):
    for k, eq, v in reqs:
        if (_field(obj, k) == v) != eq:
            return False
    return True


# ---------------------------------------------------------------- patches

def merge_patch(target, patch):
    """RFC 7386 JSON merge patch (returns a new value; target is not modified)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


# lists the real types merge by key under a strategic merge patch (path suffix -> merge key);
# every other list is replaced, as the types mark them atomic
SMP_MERGE_KEYS = {("spec", "ports"): "port", ("status", "conditions"): "type",
                  ("metadata", "ownerReferences"): "uid", ("spec", "containers"): "name"}


def strategic_merge_patch(target, patch, path=()):
    """A loose strategic merge patch: a merge patch plus merge-by-key for the lists above and the
    directives kubectl apply sends ($patch, $setElementOrder, $deleteFromPrimitiveList,
    $retainKeys)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return None
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if k.startswith("$setElementOrder/") or k in ("$patch", "$retainKeys"):
            continue
        if k.startswith("$deleteFromPrimitiveList/"):
            name = k.split("/", 1)[1]
            out[name] = [x for x in out.get(name) or [] if x not in v]
            continue
        sub = path + (k,)
        key = SMP_MERGE_KEYS.get(sub[-2:])
        if v is None:
            out.pop(k, None)
        elif isinstance(v, list) and key and isinstance(out.get(k), list):
            out[k] = _smp_list(out[k], v, key, sub)
        elif isinstance(v, dict):
            r = strategic_merge_patch(out.get(k), v, sub)
            if r is None:
                out.pop(k, None)
            else:
                out[k] = r
        else:
            out[k] = copy.deepcopy(v)
    return out


def _smp_list(cur, patch, key, path):
    out = list(cur)
    for el in patch:
        if not isinstance(el, dict) or key not in el:
            out.append(copy.deepcopy(el))
            continue
        idx = next((i for i, x in enumerate(out) if isinstance(x, dict) and
                    x.get(key) == el[key]), None)
        if el.get("$patch") == "delete":
            if idx is not None:
                del out[idx]
        elif idx is None:
            out.append({k: copy.deepcopy(v) for k, v in el.items() if not k.startswith("$")})
        else:
            out[idx] = strategic_merge_patch(out[idx], el, path)
    return out


def _pointer(p):
    if p == "":
        return []
    if not p.startswith("/"):
        raise ValueError("JSON pointer %r does not start with /" % p)
    return [t.replace("~1", "/").replace("~0", "~") for t in p[1:].split("/")]


def _parent(doc, tokens):
    cur = doc
    for t in tokens[:-1]:
        if isinstance(cur, list):
            cur = cur[int(t)]
        elif isinstance(cur, dict):
            cur = cur[t]
        else:
            raise KeyError(t)
    return cur


def _get_ptr(doc, tokens):
    cur = doc
    for t in tokens:
        cur = cur[int(t)] if isinstance(cur, list) else cur[t]
    return cur


def json_patch(doc, ops):
    """RFC 6902. Raises ValueError when an operation cannot apply."""
    doc = copy.deepcopy(doc)
    if not isinstance(ops, list):
        raise ValueError("a JSON patch is a list of operations")
    for op in ops:
        try:
            kind, tokens = op["op"], _pointer(op["path"])
            if kind == "test":
                if _get_ptr(doc, tokens) != op["value"]:
                    raise ValueError("testing value %s failed" % op["path"])
                continue
            if kind in ("move", "copy"):
                src = _pointer(op["from"])
                value = copy.deepcopy(_get_ptr(doc, src))
                if kind == "move":
                    doc = _remove(doc, src)
                doc = _add(doc, tokens, value)
            elif kind == "add":
                doc = _add(doc, tokens, copy.deepcopy(op["value"]))
            elif kind == "remove":
                doc = _remove(doc, tokens)
            elif kind == "replace":
                _get_ptr(doc, tokens)
                doc = _remove(doc, tokens)
                doc = _add(doc, tokens, copy.deepcopy(op["value"]))
            else:
                raise ValueError("unexpected kind: %s" % kind)
        except (KeyError, IndexError, TypeError) as e:
            raise ValueError("jsonpatch %s operation does not apply: %r" % (op.get("op"), e))
    return doc


def _add(doc, tokens, value):
    if not tokens:
        return value
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, list):
        if last == "-":
            parent.append(value)
        else:
            i = int(last)
            if i < 0 or i > len(parent):
                raise IndexError(i)
            parent.insert(i, value)
    else:
        parent[last] = value
    return doc


def _remove(doc, tokens):
    if not tokens:
        return None
    parent = _parent(doc, tokens)
    if isinstance(parent, list):
        del parent[int(tokens[-1])]
    else:
        del parent[tokens[-1]]
    return doc


# ---------------------------------------------------------------- watches

class _Watch:
    """One open watch: the handler thread reads its queue; the store fills it (under the lock)."""

    def __init__(self, res, ns, lsel, fsel, bookmarks):
        self.res, self.ns, self.lsel, self.fsel = res, ns, lsel, fsel
        self.bookmarks = bookmarks
        self.q = queue.SimpleQueue()
        self.hung = False

    def matches(self, obj):
        if obj is None:
            return False
        if self.ns is not None and obj["metadata"].get("namespace") != self.ns:
            return False
        return labels_match(self.lsel, obj) and fields_match(self.fsel, obj)

    def event_for(self, etype, obj, old):
        """The event this watch sees for a change (a selector change turns MODIFIED into
        ADDED/DELETED, as the real watch cache does), or None."""
        now, before = self.matches(obj), self.matches(old)
        if etype == "MODIFIED":
            if now and before:
                return "MODIFIED"
            if now:
                return "ADDED"
            if before:
                return "DELETED"
            return None
        return etype if now else None


def _now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _random_suffix(n=5):
    return "".join(random.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(n))


def _strip_typemeta(obj):
    return {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}


def _body_content(obj):
    """What generation tracks: everything but metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "kind",
                                                      "apiVersion")}


# ---------------------------------------------------------------- the server

class FakeApiServer:
    """An in-memory Kubernetes API server. All public methods are thread-safe."""

    def __init__(self, cert=None, key=None, client_ca=None, tokens=("test-token",),
                 token_user=DEFAULT_TOKEN_USER, host="127.0.0.1", port=0, tls=True,
                 bookmark_interval=60.0, history_size=10000, strict_namespaces=True,
                 git_version="v1.29.0", anonymous=None):
        if tls and not (cert and key):
            raise ValueError("FakeApiServer(tls=True) needs cert and key (or tls=False)")
        self.tls = tls
        self.host = host
        self.port = port
        self.token_user = token_user
        self.bookmark_interval = bookmark_interval
        self.strict_namespaces = strict_namespaces
        self.git_version = git_version
        # user name for requests without credentials (None: 401). kubectl never sends a bearer
        # token over plain HTTP, so kubectl against tls=False needs e.g. "system:anonymous".
        self.anonymous = anonymous
        # (method, path with query, user or None); trimmed to the last 100000 at 200000
        self.requests = []
        self._lock = threading.RLock()
        self._ctx = None
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cert, key)
            ctx.set_alpn_protocols(["http/1.1"])
            if client_ca:
                ctx.load_verify_locations(client_ca)
                ctx.verify_mode = ssl.CERT_OPTIONAL
            self._ctx = ctx
        self._tokens = {}
        self.set_tokens(tokens)
        self._deny = []               # (user, verb, resource, namespace)
        self._faults = []             # [remaining, status, retry_after, match, message]
        self._rv = 1000
        self._store = {r.name: {} for r in RESOURCES}
        self._history = collections.deque()
        self._history_size = history_size
        self._compacted = 0           # events with rv <= this are gone from the ring
        self._watches = set()
        self._conns = set()
        self._httpd = None
        self._thread = None
        self._ip = 10 << 24 | 96 << 16 | 0 << 8 | 10
        self.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})

    # ------------------------------------------------------------ lifecycle

    @property
    def url(self):
        """What clients use: https://localhost:PORT (BearSSL cannot verify IP addresses)."""
        return "%s://localhost:%d" % ("https" if self.tls else "http", self.port)

    def start(self):
        """Listens (again) on self.port (0 the first time: a free port, kept for restarts)."""
        with self._lock:
            if self._httpd is not None:
                return self
            httpd = _HttpServer((self.host, self.port), _Handler, self)
            self.port = httpd.server_address[1]
            self._httpd = httpd
            self._thread = threading.Thread(target=httpd.serve_forever, kwargs={
                "poll_interval": 0.05}, daemon=True, name="fake-apiserver-%d" % self.port)
            self._thread.start()
        return self

    def stop(self):
        """An outage: closes the listener and every open connection (watches end without their
        terminating chunk). The stored objects stay; start() serves them again."""
        with self._lock:
            httpd, self._httpd = self._httpd, None
            thread = self._thread
            watches = list(self._watches)
            conns = list(self._conns)
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        for w in watches:
            w.q.put(("ctl", "drop"))
        for c in conns:
            _hard_close(c)
        thread.join(5)

    def running(self):
        return self._httpd is not None

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.stop()

    # ------------------------------------------------------------ auth and faults

    def set_tokens(self, tokens):
        """Valid bearer tokens: a list (all map to token_user) or {token: user}. Replaces the
        previous set (token rotation)."""
        with self._lock:
            if isinstance(tokens, dict):
                self._tokens = dict(tokens)
            else:
                self._tokens = {t: self.token_user for t in tokens}

    def deny(self, user, verb, resource, namespace=None):
        """RBAC: `user` gets 403 for verb ("list", "watch", "get", "create", "update", "patch",
        "delete", "deletecollection" or "*") on resource ("ingresses", "ingresses/status", "*"),
        in every namespace or only `namespace`."""
        with self._lock:
            self._deny.append((user, verb, resource, namespace))

    def allow_all(self):
        with self._lock:
            self._deny = []

    def fail_next(self, n=1, status=500, retry_after=None, match=None, message=None):
        """The next n requests for which match(method, path_with_query) is true (all when match
        is None) get a Status error `status` (Retry-After: retry_after when given)."""
        with self._lock:
            self._faults.append([n, status, retry_after, match, message])

    def clear_faults(self):
        with self._lock:
            self._faults = []

    def expire_watches(self):
        """Compacts the history: every open watch gets a 410 Expired ERROR event and ends;
        resuming from any resourceVersion older than the current one answers 410."""
        with self._lock:
            self._compacted = self._rv
            self._history.clear()
            watches = list(self._watches)
        for w in watches:
            w.q.put(("ctl", "expire"))

    def drop_watches(self):
        """Closes every open watch connection abruptly (no terminating chunk)."""
        with self._lock:
            watches = list(self._watches)
        for w in watches:
            w.q.put(("ctl", "drop"))

    def hang_watches(self):
        """Every watch open now goes silent (no events, no bookmarks) but stays open until
        drop_watches(), stop() or its timeoutSeconds. Watches opened later are normal."""
        with self._lock:
            for w in self._watches:
                w.hung = True

    def open_watches(self, resource=None):
        with self._lock:
            return sum(1 for w in self._watches
                       if resource is None or w.res.name == _resolve(resource).name)

    def count(self, method=None, path=None, watch=None):
        """How many requests were received: method ("GET"...), path (substring of the path with
        query), watch (True: only watches, False: no watches)."""
        with self._lock:
            reqs = list(self.requests)
        n = 0
        for m, p, _ in reqs:
            is_watch = bool(re.search(r"[?&]watch=(1|true)", p))
            if method and m != method:
                continue
            if path and path not in p:
                continue
            if watch is not None and watch != is_watch:
                continue
            n += 1
        return n

    # ------------------------------------------------------------ direct state

    @property
    def resource_version(self):
        with self._lock:
            return str(self._rv)

    def put(self, obj):
        """Creates or replaces obj (a dict with apiVersion, kind, metadata.name) as the API would,
        without auth or admission; status is kept as given. Creates a missing namespace.
        Returns the stored object (a copy)."""
        res = _resource_for(obj)
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        if res.namespaced:
            meta.setdefault("namespace", "default")
        with self._lock:
            if res.namespaced and meta["namespace"] not in \
                    {k[1] for k in self._store["namespaces"]}:
                self.put({"apiVersion": "v1", "kind": "Namespace",
                          "metadata": {"name": meta["namespace"]}})
            key = (meta.get("namespace"), meta["name"])
            old = self._store[res.name].get(key)
            if old is None:
                return copy.deepcopy(self._create(res, obj, keep_status=True))
            meta.pop("resourceVersion", None)
            return copy.deepcopy(self._update(res, old, obj, keep_status=True))

    def get(self, resource, ns, name):
        """The stored object (a copy) or None. ns is ignored for cluster-scoped resources."""
        res = _resolve(resource)
        with self._lock:
            o = self._store[res.name].get((ns if res.namespaced else None, name))
            return copy.deepcopy(o)

    def delete(self, resource, ns, name):
        """Deletes now (finalizers ignored); True when it existed."""
        res = _resolve(resource)
        with self._lock:
            old = self._store[res.name].get((ns if res.namespaced else None, name))
            if old is None:
                return False
            self._remove(res, old)
            return True

    def objects(self, resource, ns=None):
        """Copies of the stored objects of a resource (one namespace or all), sorted."""
        res = _resolve(resource)
        with self._lock:
            items = sorted(self._store[res.name].items(), key=lambda kv: (kv[0][0] or "",
                                                                           kv[0][1]))
            return [copy.deepcopy(o) for k, o in items if ns is None or k[0] == ns]

    # ------------------------------------------------------------ storage (lock held)

    def _next_rv(self):
        self._rv += 1
        return str(self._rv)

    def _record(self, res, etype, obj, old):
        self._history.append((self._rv, res.name, etype, obj, old))
        while len(self._history) > self._history_size:
            self._compacted = self._history.popleft()[0]
        for w in self._watches:
            if w.res is res:
                t = w.event_for(etype, obj, old)
                if t:
                    w.q.put(("event", t, obj))

    def _defaults(self, res, obj, old=None):
        if res.name == "services":
            spec = obj.setdefault("spec", {})
            spec.setdefault("type", "ClusterIP")
            ospec = (old or {}).get("spec") or {}
            if spec.get("type") != "ExternalName" and "clusterIP" not in spec:
                if ospec.get("clusterIP"):
                    spec["clusterIP"] = ospec["clusterIP"]
                else:
                    self._ip += 1
                    spec["clusterIP"] = "%d.%d.%d.%d" % (
                        self._ip >> 24, self._ip >> 16 & 255, self._ip >> 8 & 255, self._ip & 255)
            if spec.get("clusterIP"):
                spec.setdefault("clusterIPs", [spec["clusterIP"]])
            spec.setdefault("sessionAffinity", "None")
            for p in spec.get("ports") or []:
                if isinstance(p, dict):
                    p.setdefault("protocol", "TCP")
                    if "port" in p:
                        p.setdefault("targetPort", p["port"])
        elif res.name == "secrets":
            obj.setdefault("type", "Opaque")
        elif res.name == "namespaces":
            obj.setdefault("spec", {"finalizers": ["kubernetes"]})
            obj["status"] = {"phase": "Active"}

    def _create(self, res, obj, keep_status=False):
        meta = obj["metadata"]
        obj["apiVersion"], obj["kind"] = res.api_version, res.kind
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = _now()
        meta.pop("deletionTimestamp", None)
        if res.generation:
            meta["generation"] = 1
        if res.status and not keep_status:
            obj["status"] = {"loadBalancer": {}}
        self._defaults(res, obj)
        meta["resourceVersion"] = self._next_rv()
        self._store[res.name][(meta.get("namespace"), meta["name"])] = obj
        self._record(res, "ADDED", obj, None)
        return obj

    def _update(self, res, old, new, keep_status=False, status_only=False):
        """Stores new in place of old as the real strategies do: server-owned metadata kept,
        status (or everything but status) taken from old, generation bumped on a spec change,
        no new resourceVersion when nothing changed. Returns what is stored."""
        ometa = old["metadata"]
        if status_only:
            obj = copy.deepcopy(old)
            if "status" in new:
                obj["status"] = new["status"]
            else:
                obj.pop("status", None)
        else:
            obj = new
            obj["apiVersion"], obj["kind"] = res.api_version, res.kind
            meta = obj["metadata"]
            for k in ("uid", "creationTimestamp", "deletionTimestamp", "generation",
                      "deletionGracePeriodSeconds"):
                if k in ometa:
                    meta[k] = ometa[k]
                else:
                    meta.pop(k, None)
            if res.status and not keep_status:
                if "status" in old:
                    obj["status"] = old["status"]
                else:
                    obj.pop("status", None)
            self._defaults(res, obj, old)
            if res.generation and _body_content(obj) != _body_content(old):
                meta["generation"] = ometa.get("generation", 1) + 1
        obj["metadata"]["resourceVersion"] = ometa["resourceVersion"]
        if obj == old:
            return old
        if ometa.get("deletionTimestamp") and not obj["metadata"].get("finalizers"):
            self._remove(res, old)
            return old
        obj["metadata"]["resourceVersion"] = self._next_rv()
        self._store[res.name][(ometa.get("namespace"), ometa["name"])] = obj
        self._record(res, "MODIFIED", obj, old)
        return obj

    def _remove(self, res, old):
        meta = old["metadata"]
        del self._store[res.name][(meta.get("namespace"), meta["name"])]
        gone = dict(old)
        gone["metadata"] = dict(meta, resourceVersion=self._next_rv())
        self._record(res, "DELETED", gone, old)
        if res.name == "namespaces":
            for r in RESOURCES:
                if r.namespaced:
                    for k, o in list(self._store[r.name].items()):
                        if k[0] == meta["name"]:
                            self._remove(r, o)
        return gone

    # ------------------------------------------------------------ request handling

    def _authenticate(self, handler):
        """User name, or None (unauthenticated)."""
        conn = handler.connection
        if isinstance(conn, ssl.SSLSocket):
            try:
                cert = conn.getpeercert()
            except (ValueError, OSError):
                cert = None
            if cert:
                for rdn in cert.get("subject", ()):
                    for k, v in rdn:
                        if k == "commonName":
                            return v
        auth = handler.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            with self._lock:
                return self._tokens.get(auth[7:].strip())
        return self.anonymous

    def _take_fault(self, method, path):
        with self._lock:
            for f in self._faults:
                if f[0] > 0 and (f[3] is None or f[3](method, path)):
                    f[0] -= 1
                    if f[0] == 0:
                        self._faults.remove(f)
                    return f
        return None

    def _authorize(self, user, verb, res, sub, ns, name):
        rname = res.name + ("/" + sub if sub else "")
        with self._lock:
            denied = any(u in (user, "*") and v in (verb, "*") and r in (rname, "*") and
                         (n is None or n == ns) for u, v, r, n in self._deny)
        if not denied:
            return
        what = '%s "%s"' % (res.qualified, name) if name else res.qualified
        where = 'in the namespace "%s"' % ns if ns else "at the cluster scope"
        details = res.details(name)
        raise ApiError(403, "Forbidden", '%s is forbidden: User "%s" cannot %s resource "%s" in '
                       'API group "%s" %s' % (what, user, verb, rname, res.group, where), details)

    def handle(self, h, method):
        """One request (called by the handler thread)."""
        parsed = urllib.parse.urlsplit(h.path)
        path = parsed.path.rstrip("/") or "/"
        q = {k: v[-1] for k, v in urllib.parse.parse_qs(parsed.query,
                                                         keep_blank_values=True).items()}
        user = self._authenticate(h)
        with self._lock:
            self.requests.append((method, h.path, user))
            if len(self.requests) > 200000:
                del self.requests[:100000]
        body = h.read_body()
        fault = self._take_fault(method, h.path)
        if fault:
            _, code, retry, _, msg = fault
            headers = [("Retry-After", str(retry))] if retry is not None else []
            reason = FAULT_REASONS.get(code, "InternalError")
            return h.send_json(code, status_body(code, reason, msg or {
                429: "Too many requests, please try again later.",
                503: "the server is currently unable to handle the request",
                500: "Internal error occurred: injected fault"}.get(code, "injected fault")),
                headers)
        if path in ("/healthz", "/livez", "/readyz"):
            return h.send_bytes(200, b"ok", "text/plain; charset=utf-8")
        if user is None:
            return h.send_json(401, status_body(401, "Unauthorized", "Unauthorized"))
        try:
            return self._route(h, method, path, q, user, body)
        except ApiError as e:
            return h.send_json(e.code, e.body, e.headers)
        except OSError:
            raise
        except Exception as e:  # noqa: BLE001 - a fake bug answers 500, it keeps the connection
            return h.send_json(500, status_body(500, "InternalError",
                                                "Internal error occurred: %r" % e))

    def _route(self, h, method, path, q, user, body):
        parts = path.strip("/").split("/")
        if path == "/version":
            return h.send_json(200, self._version())
        if path == "/api":
            return h.send_json(200, {"kind": "APIVersions", "versions": ["v1"],
                                     "serverAddressByClientCIDRs": [{
                                         "clientCIDR": "0.0.0.0/0",
                                         "serverAddress": "127.0.0.1:%d" % self.port}]})
        if path == "/apis":
            return h.send_json(200, {"kind": "APIGroupList", "apiVersion": "v1",
                                     "groups": [self._group(g) for g in self._groups()]})
        if parts[0] == "apis" and len(parts) == 2 and parts[1] in self._groups():
            return h.send_json(200, dict(self._group(parts[1]), kind="APIGroup",
                                         apiVersion="v1"))
        if path == "/openapi/v2":
            return self._openapi_v2(h)
        if parts[0] == "api" and len(parts) >= 2:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[0] == "apis" and len(parts) >= 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            # /openapi/v2, /openapi/v3 and aggregated discovery are absent (kubectl falls back)
            return h.send_bytes(404, b"404 page not found\n", "text/plain; charset=utf-8")
        if (group, version) not in GROUP_VERSIONS:
            return h.send_bytes(404, b"404 page not found\n", "text/plain; charset=utf-8")
        if not rest:
            if method != "GET":
                raise ApiError(405, "MethodNotAllowed",
                               "the server does not allow this method on the requested resource")
            return h.send_json(200, self._resource_list(group, version))
        ns = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            ns, rest = rest[1], rest[2:]
        res = _lookup(group, version, rest[0])
        if res is None or len(rest) > 3 or (ns is not None and not res.namespaced):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if sub is not None and not (sub == "status" and res.status):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if res.namespaced and name is not None and ns is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        watch = q.get("watch") in ("1", "true")
        verb = self._verb(method, name, watch)
        if verb is None or (sub and verb not in ("get", "update", "patch")):
            raise ApiError(405, "MethodNotAllowed",
                           "the server does not allow this method on the requested resource")
        self._authorize(user, verb, res, sub, ns, name)
        dry = "dryRun" in q
        if verb == "watch":
            if name:      # the deprecated watch of one object: same as a name field selector
                q["fieldSelector"] = ",".join(x for x in (q.get("fieldSelector"),
                                                          "metadata.name=" + name) if x)
            return self._serve_watch(h, res, ns, q)
        if verb == "list":
            return h.send_json(200, self._list(res, ns, q))
        if verb == "get":
            return h.send_json(200, self._get(res, ns, name))
        if verb == "create":
            return h.send_json(201, self._api_create(res, ns, body, dry))
        if verb == "update":
            code, obj = self._api_update(res, ns, name, sub, body, dry)
            return h.send_json(code, obj)
        if verb == "patch":
            return h.send_json(200, self._api_patch(res, ns, name, sub, body,
                                                    h.headers.get("Content-Type", ""), dry))
        if verb == "delete":
            code, obj = self._api_delete(res, ns, name, body, dry)
            return h.send_json(code, obj)
        if verb == "deletecollection":
            return h.send_json(200, self._api_deletecollection(res, ns, q, dry))
        raise ApiError(405, "MethodNotAllowed", "the server does not allow this method")

    @staticmethod
    def _openapi_v2(h):
        """An OpenAPI v2 document with no definitions: kubectl validates only kinds it finds in
        it, so it validates nothing, and it needs the document to exist (or --validate=false).
        kubectl asks for protobuf: field 1 (swagger) = "2.0" is the whole encoding."""
        if "protobuf" in h.headers.get("Accept", ""):
            return h.send_bytes(200, b"\x0a\x032.0",
                                "application/com.github.proto-openapi.spec.v2.v1.0+protobuf")
        return h.send_json(200, {"swagger": "2.0", "info": {"title": "fake-apiserver",
                                                             "version": "v1"}, "paths": {}})

    @staticmethod
    def _verb(method, name, watch):
        if method == "GET":
            if watch:
                return "watch"
            return "get" if name else "list"
        if method == "POST":
            return None if name else "create"
        if method == "PUT":
            return "update" if name else None
        if method == "PATCH":
            return "patch" if name else None
        if method == "DELETE":
            return "delete" if name else "deletecollection"
        return None

    # ------------------------------------------------------------ discovery

    def _version(self):
        m = re.match(r"v(\d+)\.(\d+)", self.git_version)
        return {"major": m.group(1), "minor": m.group(2), "gitVersion": self.git_version,
                "gitCommit": "0000000000000000000000000000000000000000",
                "gitTreeState": "clean", "buildDate": "2024-01-01T00:00:00Z",
                "goVersion": "go1.21.5", "compiler": "gc", "platform": "linux/amd64"}

    @staticmethod
    def _groups():
        out = []
        for g, _ in GROUP_VERSIONS:
            if g and g not in out:
                out.append(g)
        return out

    @staticmethod
    def _group(g):
        vs = [{"groupVersion": "%s/%s" % (g, v), "version": v} for gg, v in GROUP_VERSIONS
              if gg == g]
        return {"name": g, "versions": vs, "preferredVersion": vs[0]}

    @staticmethod
    def _resource_list(group, version):
        out = []
        for r in RESOURCES:
            if r.group != group or r.version != version:
                continue
            d = {"name": r.name, "singularName": r.singular, "namespaced": r.namespaced,
                 "kind": r.kind, "verbs": r.verbs}
            if r.short:
                d["shortNames"] = r.short
            if r.categories:
                d["categories"] = r.categories
            out.append(d)
            if r.status:
                out.append({"name": r.name + "/status", "singularName": "",
                            "namespaced": r.namespaced, "kind": r.kind,
                            "verbs": ["get", "patch", "update"]})
        return {"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": "%s/%s" % (group, version) if group else version,
                "resources": out}

    # ------------------------------------------------------------ verbs

    def _get(self, res, ns, name):
        with self._lock:
            o = self._store[res.name].get((ns, name))
        if o is None:
            raise not_found(res, name)
        return o

    def _list(self, res, ns, q):
        lsel = parse_label_selector(q.get("labelSelector"))
        fsel = parse_field_selector(q.get("fieldSelector"))
        try:
            limit = int(q.get("limit") or 0)
        except ValueError:
            raise bad_request("invalid limit %r" % q.get("limit"))
        start, list_rv = None, None
        if q.get("continue"):
            try:
                tok = json.loads(base64.b64decode(q["continue"]))
                start, list_rv = tuple(tok["start"]), int(tok["rv"])
            except (ValueError, KeyError, TypeError):
                raise bad_request("continue key is not valid: illegal base64 data")
        with self._lock:
            if list_rv is not None and list_rv < self._compacted:
                raise ApiError(410, "Expired", "The provided continue parameter is too old to "
                               "display a consistent list result. You can start a new list "
                               "without the continue parameter.")
            rv = list_rv if list_rv is not None else self._rv
            items = list(self._store[res.name].items())
        items.sort(key=lambda kv: (kv[0][0] or "", kv[0][1]))
        out, more, remaining = [], None, 0
        for (ons, oname), o in items:
            key = (ons or "", oname)
            if start is not None and key <= start:
                continue
            if ns is not None and ons != ns:
                continue
            if not (labels_match(lsel, o) and fields_match(fsel, o)):
                continue
            if limit and len(out) >= limit:
                if more is None:
                    more = out[-1][0]
                remaining += 1
                continue
            out.append((key, o))
        meta = {"resourceVersion": str(rv)}
        if more is not None:
            meta["continue"] = base64.b64encode(json.dumps(
                {"v": "meta.k8s.io/v1", "rv": rv, "start": list(more)}).encode()).decode()
            meta["remainingItemCount"] = remaining
        return {"kind": res.kind + "List", "apiVersion": res.api_version, "metadata": meta,
                "items": [_strip_typemeta(o) for _, o in out]}

    def _decode(self, body, res):
        try:
            obj = json.loads(body or b"null")
        except ValueError as e:
            raise bad_request("the body of the request could not be decoded as JSON: %s" % e)
        if not isinstance(obj, dict):
            raise bad_request("the object provided is unrecognized (must be a JSON object)")
        if obj.get("kind") not in (None, "", res.kind) or \
                obj.get("apiVersion") not in (None, "", res.api_version):
            raise bad_request("the API version in the data (%s) does not match the expected "
                              "API version (%s)" % (obj.get("apiVersion"), res.api_version)
                              if obj.get("kind") == res.kind else
                              "%s in version \"%s\" cannot be handled as a %s: no kind \"%s\" "
                              "is registered" % (res.kind, res.version, res.kind,
                                                 obj.get("kind")))
        if not isinstance(obj.get("metadata", {}), dict):
            raise bad_request("metadata must be an object")
        obj.setdefault("metadata", {})
        return obj

    def _check_ns(self, res, ns, meta):
        if not res.namespaced:
            meta.pop("namespace", None)
            return
        if meta.get("namespace") not in (None, "", ns):
            raise bad_request("the namespace of the provided object does not match the "
                              "namespace sent on the request")
        meta["namespace"] = ns
        if self.strict_namespaces and (None, ns) not in self._store["namespaces"]:
            raise ApiError(404, "NotFound", 'namespaces "%s" not found' % ns,
                           {"name": ns, "kind": "namespaces"})

    def _api_create(self, res, ns, body, dry):
        obj = self._decode(body, res)
        meta = obj["metadata"]
        if not meta.get("name"):
            if meta.get("generateName"):
                meta["name"] = meta["generateName"] + _random_suffix()
            else:
                raise invalid(res, "", "metadata.name", "FieldValueRequired",
                              "Required value: name or generateName is required")
        if res.namespaced and ns is None:
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on "
                           "the requested resource")
        meta.pop("resourceVersion", None)
        with self._lock:
            self._check_ns(res, ns, meta)
            if (ns, meta["name"]) in self._store[res.name]:
                raise ApiError(409, "AlreadyExists", '%s "%s" already exists'
                               % (res.qualified, meta["name"]), res.details(meta["name"]))
            if dry:
                return obj
            return self._create(res, obj)

    def _api_update(self, res, ns, name, sub, body, dry):
        obj = self._decode(body, res)
        meta = obj["metadata"]
        if meta.get("name") not in (None, "", name):
            raise bad_request("the name of the object (%s) does not match the name on the URL "
                              "(%s)" % (meta.get("name"), name))
        meta["name"] = name
        with self._lock:
            self._check_ns(res, ns, meta)
            old = self._store[res.name].get((ns, name))
            if old is None:
                if res.create_on_update and not sub:
                    return 201, obj if dry else self._create(res, obj)
                raise not_found(res, name)
            if meta.get("resourceVersion") and meta["resourceVersion"] != \
                    old["metadata"]["resourceVersion"]:
                raise conflict(res, name)
            if dry:
                return 200, obj
            return 200, self._update(res, old, obj, status_only=bool(sub))

    def _api_patch(self, res, ns, name, sub, body, ctype, dry):
        ctype = ctype.split(";")[0].strip().lower()
        if ctype not in ("application/merge-patch+json", "application/strategic-merge-patch+json",
                         "application/json-patch+json"):
            raise ApiError(415, "UnsupportedMediaType", "the body of the request was in an "
                           "unknown format - accepted media types include: "
                           "application/json-patch+json, application/merge-patch+json, "
                           "application/strategic-merge-patch+json")
        try:
            patch = json.loads(body or b"null")
        except ValueError as e:
            raise bad_request("error decoding patch: %s" % e)
        with self._lock:
            old = self._get(res, ns, name)
            base = copy.deepcopy(old)
            if ctype == "application/json-patch+json":
                try:
                    new = json_patch(base, patch)
                except ValueError as e:
                    raise ApiError(422, "Invalid", str(e))
            elif not isinstance(patch, dict):
                raise bad_request("the patch must be a JSON object")
            elif ctype == "application/merge-patch+json":
                new = merge_patch(base, patch)
            else:
                new = strategic_merge_patch(base, patch)
            if not isinstance(new, dict) or not isinstance(new.get("metadata"), dict):
                raise ApiError(422, "Invalid", "the patched object is not a valid object")
            meta = new["metadata"]
            if meta.get("name") != name or (res.namespaced and meta.get("namespace") != ns):
                raise bad_request("the patch changes metadata.name or metadata.namespace")
            if meta.get("resourceVersion") and meta["resourceVersion"] != \
                    old["metadata"]["resourceVersion"]:
                raise conflict(res, name)
            if new.get("kind") != res.kind or new.get("apiVersion") != res.api_version:
                raise bad_request("the patch changes kind or apiVersion")
            if dry:
                return new
            return self._update(res, old, new, status_only=bool(sub))

    def _api_delete(self, res, ns, name, body, dry):
        opts = {}
        if body:
            try:
                opts = json.loads(body)
            except ValueError as e:
                raise bad_request("error decoding DeleteOptions: %s" % e)
        pre = (opts or {}).get("preconditions") or {}
        with self._lock:
            old = self._get(res, ns, name)
            meta = old["metadata"]
            if pre.get("uid") and pre["uid"] != meta["uid"]:
                raise ApiError(409, "Conflict", 'Operation cannot be fulfilled on %s "%s": '
                               'Precondition failed: UID in precondition: %s, UID in object '
                               'meta: %s' % (res.qualified, name, pre["uid"], meta["uid"]),
                               res.details(name))
            if pre.get("resourceVersion") and pre["resourceVersion"] != meta["resourceVersion"]:
                raise conflict(res, name)
            if dry:
                return 200, old
            if meta.get("finalizers"):
                if not meta.get("deletionTimestamp"):
                    new = copy.deepcopy(old)
                    new["metadata"]["deletionTimestamp"] = _now()
                    new["metadata"]["deletionGracePeriodSeconds"] = 0
                    new["metadata"]["resourceVersion"] = self._next_rv()
                    self._store[res.name][(ns, name)] = new
                    self._record(res, "MODIFIED", new, old)
                    return 202, new
                return 202, old
            return 200, self._remove(res, old)

    def _api_deletecollection(self, res, ns, q, dry):
        lst = self._list(res, ns, {k: v for k, v in q.items() if k in ("labelSelector",
                                                                       "fieldSelector")})
        with self._lock:
            for o in lst["items"]:
                cur = self._store[res.name].get((o["metadata"].get("namespace"),
                                                 o["metadata"]["name"]))
                if cur is not None and not dry:
                    self._remove(res, cur)
        return lst

    # ------------------------------------------------------------ watch

    def _serve_watch(self, h, res, ns, q):
        lsel = parse_label_selector(q.get("labelSelector"))
        fsel = parse_field_selector(q.get("fieldSelector"))
        bookmarks = q.get("allowWatchBookmarks") in ("1", "true")
        try:
            timeout = float(q["timeoutSeconds"]) if q.get("timeoutSeconds") else None
        except ValueError:
            raise bad_request("invalid timeoutSeconds %r" % q.get("timeoutSeconds"))
        since = q.get("resourceVersion") or ""
        initial_end = q.get("sendInitialEvents") in ("1", "true")
        w = _Watch(res, ns, lsel, fsel, bookmarks)
        first = []
        with self._lock:
            if since in ("", "0") or initial_end:
                items = sorted(self._store[res.name].items(),
                               key=lambda kv: (kv[0][0] or "", kv[0][1]))
                first = [("ADDED", o) for _, o in items if w.matches(o)]
            else:
                try:
                    rv = int(since)
                except ValueError:
                    raise bad_request('invalid resource version: %s' % since)
                if rv < self._compacted:
                    first = [("ERROR", status_body(
                        410, "Expired", "too old resource version: %d (%d)"
                        % (rv, self._compacted + 1)))]
                else:
                    for erv, rname, etype, obj, old in self._history:
                        if erv > rv and rname == res.name:
                            t = w.event_for(etype, obj, old)
                            if t:
                                first.append((t, obj))
            start_rv = self._rv
            expired = first and first[0][0] == "ERROR"
            if not expired:
                self._watches.add(w)
        try:
            h.start_stream()
            for t, o in first:
                h.send_chunk(_event(t, o))
            if expired:
                return h.end_stream()
            if initial_end:
                h.send_chunk(_event("BOOKMARK", self._bookmark(res, start_rv, True)))
            self._pump(h, w, timeout)
        except (OSError, ValueError):
            h.close_connection = True
        finally:
            with self._lock:
                self._watches.discard(w)

    def _bookmark(self, res, rv, initial_end=False):
        meta = {"resourceVersion": str(rv)}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        return {"kind": res.kind, "apiVersion": res.api_version, "metadata": meta}

    def _pump(self, h, w, timeout):
        now = time.monotonic()
        end = now + timeout if timeout else None
        next_bm = now + self.bookmark_interval
        while True:
            now = time.monotonic()
            if end is not None and now >= end:
                return h.end_stream()
            wait = 1.0
            if end is not None:
                wait = min(wait, end - now)
            if w.bookmarks and not w.hung:
                wait = min(wait, max(0.0, next_bm - now))
            try:
                item = w.q.get(timeout=max(wait, 0.001))
            except queue.Empty:
                item = None
            if item is not None and item[0] == "ctl":
                if item[1] == "drop":
                    h.close_connection = True
                    return _hard_close(h.connection)
                if item[1] == "expire" and not w.hung:
                    with self._lock:
                        rv = self._compacted
                    h.send_chunk(_event("ERROR", status_body(
                        410, "Expired", "too old resource version: %s (%d)" % (rv, rv + 1))))
                    return h.end_stream()
                continue
            if w.hung:
                continue
            if item is not None:
                h.send_chunk(_event(item[1], item[2]))
            if w.bookmarks and time.monotonic() >= next_bm:
                # everything up to rv is already queued for this watch (queued under the lock)
                with self._lock:
                    rv = self._rv
                while True:
                    try:
                        more = w.q.get_nowait()
                    except queue.Empty:
                        break
                    if more[0] == "ctl":
                        w.q.put(more)
                        break
                    h.send_chunk(_event(more[1], more[2]))
                h.send_chunk(_event("BOOKMARK", self._bookmark(w.res, rv)))
                next_bm = time.monotonic() + self.bookmark_interval


def _event(t, obj):
    return (json.dumps({"type": t, "object": obj}, separators=(",", ":")) + "\n").encode()


def _hard_close(sock):
    """Shuts the TCP connection down under whatever thread uses it (the base socket's shutdown:
    SSLSocket.shutdown would drop the TLS state that thread is still using)."""
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


# ---------------------------------------------------------------- HTTP plumbing

class _HttpServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr, handler, fake):
        self.fake = fake
        super().__init__(addr, handler)

    def finish_request(self, request, client_address):
        """TLS handshake here, in the connection's thread, so a slow client blocks no one."""
        ctx = self.fake._ctx
        if ctx is not None:
            try:
                request.settimeout(10)
                request = ctx.wrap_socket(request, server_side=True)
                request.settimeout(None)
            except (OSError, ssl.SSLError):
                request.close()
                return
        with self.fake._lock:
            self.fake._conns.add(request)
        try:
            self.RequestHandlerClass(request, client_address, self)
        except (OSError, ssl.SSLError):
            pass
        finally:
            with self.fake._lock:
                self.fake._conns.discard(request)
            try:
                request.close()
            except OSError:
                pass

    def shutdown_request(self, request):
        try:
            request.close()
        except OSError:
            pass

    def handle_error(self, request, client_address):
        pass


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-apiserver"
    sys_version = ""

    def log_message(self, fmt, *args):
        pass

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def send_bytes(self, code, data, ctype, headers=()):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, private")
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_json(self, code, obj, headers=()):
        self.send_bytes(code, json.dumps(obj, separators=(",", ":")).encode(),
                        "application/json", headers)

    def start_stream(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()

    def send_chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def end_stream(self):
        self.wfile.write(b"0\r\n\r\n")

    def _any(self):
        self.server.fake.handle(self, self.command)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _any


# ---------------------------------------------------------------- certificates

def _openssl(*args):
    r = subprocess.run(["openssl"] + [str(a) for a in args], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=30)
    if r.returncode != 0:
        raise RuntimeError("openssl %s failed: %s" % (" ".join(map(str, args)),
                                                      r.stderr.decode(errors="replace")))


class TestPki:
    """A test CA (P-256) in `folder` that signs the API server's certificate (DNS localhost and
    kubernetes.default.svc) and client certificates (CN = user, O = groups)."""
    __test__ = False

    def __init__(self, folder):
        self.dir = str(folder)
        os.makedirs(self.dir, exist_ok=True)
        self.serial = 100
        self.ca_cert = os.path.join(self.dir, "ca.crt")
        self.ca_key = os.path.join(self.dir, "ca.key")
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-nodes", "-keyout", self.ca_key, "-out", self.ca_cert, "-days", "30",
                 "-subj", "/CN=fake-apiserver test CA",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        self.server_cert, self.server_key = self._leaf(
            "apiserver", "/CN=kube-apiserver", "serverAuth",
            "subjectAltName=DNS:localhost,DNS:kubernetes.default.svc\n")

    def client(self, user, groups=()):
        """(cert path, key path) for a client certificate naming `user`."""
        subj = "".join("/O=%s" % g for g in groups) + "/CN=%s" % user
        return self._leaf("client-" + re.sub(r"[^A-Za-z0-9_.-]", "_", user), subj,
                          "clientAuth", "")

    def _leaf(self, name, subj, eku, extra):
        base = os.path.join(self.dir, name)
        _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", base + ".key", "-out", base + ".csr", "-subj", subj)
        with open(base + ".ext", "w") as f:
            f.write("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                    "extendedKeyUsage=%s\n%s" % (eku, extra))
        self.serial += 1
        _openssl("x509", "-req", "-in", base + ".csr", "-CA", self.ca_cert, "-CAkey", self.ca_key,
                 "-set_serial", self.serial, "-days", "30", "-sha256", "-extfile", base + ".ext",
                 "-out", base + ".crt")
        return base + ".crt", base + ".key"


# ---------------------------------------------------------------- standalone

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--cert", help="server certificate (PEM, chain)")
    ap.add_argument("--key", help="server key (PEM)")
    ap.add_argument("--client-ca", help="CA that signs client certificates (CN = user)")
    ap.add_argument("--token", action="append", default=[], help="a valid bearer token")
    ap.add_argument("--http", action="store_true", help="plain HTTP instead of HTTPS")
    ap.add_argument("--anonymous", metavar="USER",
                    help="user for requests without credentials (kubectl sends no token over "
                    "plain HTTP); default: 401")
    ap.add_argument("--bookmark-interval", type=float, default=60.0)
    ap.add_argument("--load", action="append", default=[],
                    help="a JSON or YAML file of objects (or a List) to store at start")
    a = ap.parse_args(argv)
    if not a.http and not (a.cert and a.key):
        ap.error("--cert and --key are required (or --http)")
    srv = FakeApiServer(cert=a.cert, key=a.key, client_ca=a.client_ca,
                        tokens=a.token or ["test-token"], host=a.host, port=a.port,
                        tls=not a.http, bookmark_interval=a.bookmark_interval,
                        anonymous=a.anonymous)
    for path in a.load:
        text = open(path).read()
        try:
            docs = [json.loads(text)]
        except ValueError:
            import yaml
            docs = list(yaml.safe_load_all(text))
        for d in docs:
            for o in (d.get("items") if d and d.get("kind", "").endswith("List") else [d]):
                if o:
                    srv.put(o)
    srv.start()
    print("fake-apiserver listening on %s (port %d)" % (srv.url, srv.port), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    srv.stop()


if __name__ == "__main__":
    sys.exit(main())
