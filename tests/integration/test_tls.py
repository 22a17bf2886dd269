"""TLS termination (issue 3), end to end with real clients: certificates made at test time with the
openssl command (a root CA, an intermediate, RSA-2048 and ECDSA P-256/P-384 leaves signed by the
intermediate), put into kubernetes.io/tls Secrets in the manifest folder; gatehouse-agent turns
them into STATE/tls/ files and the routes file's `tls` section; gatehouse-proxy serves them on
--https. Clients: openssl s_client (SNI, chain, protocol, ciphers, ALPN, resumption), curl
(verification with only the root CA trusted, redirects, headers), Python's ssl module (one
keep-alive connection held open across a certificate change)."""
import os
import re
import stat
import time

import pytest

from helpers import (Pki, RawConn, TlsConn, cert_info, curl, ingress, ingress_class, metric_sum,
                     raw_request,
                     request, s_client, service_for, tls_secret, wait_until, with_tls)

DEFAULT_CN = "gatehouse default"
GOOD = {  # host (SNI and Host) -> (CN of the certificate it must get, key type)
    "rsa.tls.test": ("rsa.tls.test", "rsa2048"),
    "ec.tls.test": ("ec.tls.test", "p256"),
    "p384.tls.test": ("p384.tls.test", "p384"),
    "a.wild.tls.test": ("*.wild.tls.test", "p256"),
}
BAD = [  # host, Ingress, Secret
    ("garbage.tls.test", "bad-garbage", "garbage-tls"),
    ("mismatch.tls.test", "bad-mismatch", "mismatch-tls"),
    ("expired.tls.test", "bad-expired", "expired-tls"),
    ("missing.tls.test", "bad-missing", "missing-tls"),      # names a Secret that does not exist
]


def cn(subject):
    m = re.search(r"CN\s*=\s*([^,/]+)", subject)
    return m.group(1).strip() if m else None


def route(host):
    return (host, [("/", "Prefix", "svc-app", 80)])


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    p = Pki(tmp_path_factory.mktemp("pki"))
    p.certs = {
        "rsa": p.leaf("rsa.tls.test", key="rsa2048"),
        "ec": p.leaf("ec.tls.test", key="p256"),
        "p384": p.leaf("p384.tls.test", key="p384"),
        "wild": p.leaf("*.wild.tls.test", key="p256", file_name="wild"),
        "noredir": p.leaf("noredir.tls.test", sans=["noredir-gh.tls.test",
                                                    "noredir-nginx.tls.test"]),
        "mismatch": p.leaf("mismatch.tls.test", key="rsa2048"),
        "other": p.leaf("other.tls.test", key="rsa2048"),
        "expired": p.leaf("expired.tls.test", key="p256", expired=True),
        "fallback": p.leaf("fallback.tls.test", key="p256"),
    }
    return p


@pytest.fixture(scope="module")
def world(module_env, pki):
    """One agent render and one proxy (2 workers, --https) for the read-only tests."""
    env = module_env
    c = pki.certs
    docs = [ingress_class()] + service_for("svc-app", [env.backend("app")])
    docs += [
        tls_secret("rsa-tls", c["rsa"].chain, c["rsa"].key),
        tls_secret("ec-tls", c["ec"].chain, c["ec"].key),
        tls_secret("p384-tls", c["p384"].chain, c["p384"].key),
        tls_secret("wild-tls", c["wild"].chain, c["wild"].key),
        tls_secret("noredir-tls", c["noredir"].chain, c["noredir"].key),
        tls_secret("garbage-tls", b"\x00\x01not a certificate\xff" * 20, b"not a key either\n"),
        tls_secret("mismatch-tls", c["mismatch"].chain, c["other"].key),
        tls_secret("expired-tls", c["expired"].chain, c["expired"].key),
    ]
    docs.append(with_tls(ingress("web", [route(h) for h in
                                         ("rsa.tls.test", "ec.tls.test", "p384.tls.test",
                                          "*.wild.tls.test", "plain.tls.test")]),
                         [(["rsa.tls.test"], "rsa-tls"), (["ec.tls.test"], "ec-tls"),
                          (["p384.tls.test"], "p384-tls"), (["*.wild.tls.test"], "wild-tls")]))
    docs.append(with_tls(ingress("noredir-gh", [route("noredir-gh.tls.test")],
                                 annotations={"gatehouse.dev/ssl-redirect": "false"}),
                         [(["noredir-gh.tls.test"], "noredir-tls")]))
    docs.append(with_tls(ingress("noredir-nginx", [route("noredir-nginx.tls.test")],
                                 annotations={"nginx.ingress.kubernetes.io/ssl-redirect": "false"}),
                         [(["noredir-nginx.tls.test"], "noredir-tls")]))
    for host, ing, sec in BAD:
        docs.append(with_tls(ingress(ing, [route(host)]), [([host], sec)]))
    env.agent_once = env.render(docs)
    env.proxy = env.start_proxy(https=True)
    env.pki = pki
    return env


def https(world, host, path="/"):
    """curl over HTTPS to the world's proxy, trusting only the test root CA."""
    return curl(host, world.proxy.https_port, path, cacert=world.pki.root_path)


# ---------------------------------------------------------------- certificate selection

@pytest.mark.parametrize("servername,expected", [
    ("rsa.tls.test", "rsa.tls.test"),             # exact
    ("ec.tls.test", "ec.tls.test"),
    ("p384.tls.test", "p384.tls.test"),
    ("a.wild.tls.test", "*.wild.tls.test"),       # wildcard: one extra label
    ("x-9.wild.tls.test", "*.wild.tls.test"),
    ("Rsa.TLS.Test", "rsa.tls.test"),             # names are case-insensitive
    ("unknown.tls.test", DEFAULT_CN),             # unknown -> default certificate
    ("a.b.wild.tls.test", DEFAULT_CN),            # two extra labels: not the wildcard
    ("wild.tls.test", DEFAULT_CN),                # the bare parent: not the wildcard
    ("plain.tls.test", DEFAULT_CN),               # routed, but no tls entry
    (None, DEFAULT_CN),                           # no SNI at all
])
def test_sni_selects_certificate(world, servername, expected):
    r = s_client(world.proxy.https_port, servername)
    assert r.handshake_ok, r
    subject, sans, _ = r.leaf
    assert cn(subject) == expected, (subject, r)
    if expected != DEFAULT_CN:
        assert expected in sans


@pytest.mark.parametrize("host", sorted(GOOD))
def test_curl_verifies_every_tls_host(world, host):
    """Only the root CA is trusted: this verifies only if the proxy sends the intermediate."""
    r = https(world, host, "/hello?x=1")
    assert r.rc == 0 and r.status == 200, r
    assert r.json["backend"] == "app" and r.json["path"] == "/hello"


@pytest.mark.parametrize("host", ["rsa.tls.test", "ec.tls.test"])
def test_full_chain_sent(world, host):
    r = s_client(world.proxy.https_port, host,
                 ["-CAfile", world.pki.root_path, "-verify_hostname", host])
    assert r.handshake_ok, r
    assert len(r.certs) == 2, "expected leaf + intermediate, got %d certificates\n%r" % (
        len(r.certs), r)
    leaf_subject, _, leaf_issuer = cert_info(r.certs[0])
    int_subject, _, int_issuer = cert_info(r.certs[1])
    assert cn(leaf_subject) == host and cn(leaf_issuer) == "Test Intermediate CA"
    assert cn(int_subject) == "Test Intermediate CA" and cn(int_issuer) == "Test Root CA"
    assert "Verify return code: 0 (ok)" in r.out, r


def test_unknown_name_fails_verification(world):
    """Control: the default certificate does not verify for a name it does not carry."""
    r = https(world, "unknown.tls.test")
    assert r.rc != 0 and r.status is None, r


# ---------------------------------------------------------------- redirects

def https_location(proxy, host, path):
    """The redirect target: https://host/path?query, with the HTTPS listener's port when it is not
    443 (as ingress-nginx does), so the redirect leads to this proxy's HTTPS listener."""
    return ("https://%s%s" % (host, path),
            "https://%s:%d%s" % (host, proxy.https_port, path))


@pytest.mark.parametrize("host,path", [
    ("rsa.tls.test", "/a/b%20c?x=1&y=two&z=%2F"),
    ("ec.tls.test", "/"),
    ("a.wild.tls.test", "/deep/path/?q=1"),
    ("p384.tls.test", "/only-path"),
])
def test_plain_http_redirects_to_https_keeping_path_and_query(world, host, path):
    p = world.proxy
    r = curl(host, p.http_port, path, scheme="http")
    assert r.rc == 0 and r.status == 308, r
    assert r.header("Location") in https_location(p, host, path), r.headers
    assert b'"backend"' not in r.body, r              # answered by the proxy itself
    if r.header("Location").startswith("https://%s:%d/" % (host, p.https_port)):
        # follow it, verifying the certificate: the backend gets the same path and query
        f = curl(host, p.http_port, path, scheme="http", cacert=world.pki.root_path,
                 extra=["-L", "--proto-redir", "=https", "--resolve",
                        "%s:%d:127.0.0.1" % (host, p.https_port)])
        assert f.rc == 0 and f.status == 200, f
        assert f.json["path"] == path.split("?")[0]
        assert f.json["query"] == (path.split("?", 1)[1] if "?" in path else ""), f.json
        assert f.req_header("X-Forwarded-Proto") == "https"


def test_redirect_keeps_method_and_ignores_port_in_host_header(world):
    p = world.proxy
    r = request(p.http_port, "POST", "/p?q=1", host="rsa.tls.test:8080", body=b"data")
    assert r.status == 308, r
    assert r.header("Location") in https_location(p, "rsa.tls.test", "/p?q=1"), r.headers


@pytest.mark.parametrize("host", ["noredir-gh.tls.test", "noredir-nginx.tls.test",
                                  "plain.tls.test"])
def test_no_redirect_when_annotated_off_or_no_tls(world, host):
    r = curl(host, world.proxy.http_port, "/x?y=1", scheme="http")
    assert r.rc == 0 and r.status == 200, r
    assert r.json["backend"] == "app" and r.json["path"] == "/x"
    assert r.req_header("X-Forwarded-Proto") == "http"
    if host != "plain.tls.test":            # still served over HTTPS, with its certificate
        s = https(world, host, "/x")
        assert s.rc == 0 and s.status == 200, s


# ---------------------------------------------------------------- what the backend sees

def test_forwarded_proto_and_port_over_https(world):
    r = https(world, "rsa.tls.test", "/fwd")
    assert r.rc == 0 and r.status == 200, r
    assert r.req_header("X-Forwarded-Proto") == "https"
    assert r.req_header("X-Forwarded-Port") == str(world.proxy.https_port)
    assert r.req_header("Host") == "rsa.tls.test:%d" % world.proxy.https_port
    assert r.header("Strict-Transport-Security") is None, "HSTS sent without --hsts"


def test_keep_alive_requests_on_one_tls_connection(world):
    with TlsConn(world.proxy.https_port, "ec.tls.test", cafile=world.pki.root_path) as c:
        for i in range(5):
            c.send(raw_request("GET", "/k%d" % i, "ec.tls.test"))
            r = c.read_response()
            assert r.status == 200 and r.json["path"] == "/k%d" % i
        assert c.sock.version() == "TLSv1.2"
        assert c.sock.selected_alpn_protocol() == "http/1.1"


# ---------------------------------------------------------------- protocol and ciphers

@pytest.mark.parametrize("host,kex,bits", [
    ("rsa.tls.test", "ECDHE-RSA-", "2048"),
    ("ec.tls.test", "ECDHE-ECDSA-", "256"),
    ("p384.tls.test", "ECDHE-ECDSA-", "384"),
])
def test_rsa_and_ecdsa_default_client(world, host, kex, bits):
    r = s_client(world.proxy.https_port, host)
    assert r.handshake_ok, r
    assert r.protocol == "TLSv1.2", r
    assert r.cipher.startswith(kex) and "GCM" in r.cipher, r
    assert "Server public key is %s bit" % bits in r.out, r


def test_tls13_only_client_fails(world):
    r = s_client(world.proxy.https_port, "rsa.tls.test", ["-tls1_3"])
    assert not r.handshake_ok, r


@pytest.mark.parametrize("host,ciphers", [
    ("rsa.tls.test", "AES128-GCM-SHA256:AES256-GCM-SHA384:AES128-SHA:AES256-SHA"),    # RSA kex
    ("rsa.tls.test", "ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA:"
                     "ECDHE-RSA-AES128-SHA256:ECDHE-RSA-AES256-SHA384"),              # CBC only
    ("ec.tls.test", "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:"
                    "ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA384"),           # CBC only
])
def test_weak_cipher_lists_refused(world, host, ciphers):
    r = s_client(world.proxy.https_port, host, ["-tls1_2", "-cipher", ciphers])
    assert not r.handshake_ok, r


@pytest.mark.parametrize("host,ciphers", [
    ("rsa.tls.test", "ECDHE-RSA-CHACHA20-POLY1305:ECDHE-RSA-AES128-GCM-SHA256:"
                     "ECDHE-RSA-AES256-GCM-SHA384"),
    ("ec.tls.test", "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES256-GCM-SHA384:"
                    "ECDHE-ECDSA-AES128-GCM-SHA256"),
])
def test_aes_gcm_preferred_over_client_order(world, host, ciphers):
    r = s_client(world.proxy.https_port, host, ["-tls1_2", "-cipher", ciphers])
    assert r.handshake_ok, r
    assert "GCM" in r.cipher, r


def test_alpn_http11(world):
    r = s_client(world.proxy.https_port, "rsa.tls.test", ["-alpn", "h2,http/1.1"])
    assert r.handshake_ok, r
    assert r.alpn == "http/1.1", r


def test_plain_http_on_https_port_is_refused(world):
    """A client speaking HTTP to the HTTPS port gets no HTTP answer and the proxy stays up."""
    with RawConn(world.proxy.https_port, timeout=3) as c:
        c.send(raw_request("GET", "/", "rsa.tls.test"))
        try:
            data = c.read_to_eof(timeout=3)
        except (OSError, AssertionError):
            data = b""
        assert not data.startswith(b"HTTP/1.1 200")
    r = https(world, "rsa.tls.test")
    assert r.rc == 0 and r.status == 200, r


# ---------------------------------------------------------------- session resumption

def count_reused(r):
    return len(re.findall(r"^Reused, ", r.out, re.M)), len(re.findall(r"^New, ", r.out, re.M))


@pytest.mark.parametrize("host", ["rsa.tls.test", "ec.tls.test"])
def test_session_resumption(world, host):
    r = s_client(world.proxy.https_port, host, ["-tls1_2", "-reconnect"])
    reused, new = count_reused(r)
    assert new == 1 and reused >= 4, r


def test_no_resumption_with_session_cache_off(world):
    p = world.start_proxy(https=True, extra=["--tls-session-cache", "0"])
    r = s_client(p.https_port, "rsa.tls.test", ["-tls1_2", "-reconnect"])
    reused, new = count_reused(r)
    assert reused == 0 and new >= 5, r


# ---------------------------------------------------------------- HSTS and default certificate

def test_hsts_only_with_flag_and_only_over_https(world):
    p = world.start_proxy(https=True, extra=["--hsts", "31536000"])
    r = curl("rsa.tls.test", p.https_port, "/", cacert=world.pki.root_path)
    assert r.rc == 0 and r.status == 200, r
    assert r.header("Strict-Transport-Security") is not None, r.headers
    assert re.match(r"max-age=31536000\b", r.header("Strict-Transport-Security"))
    # RFC 6797 7.2: never over plain HTTP
    plain = curl("plain.tls.test", p.http_port, "/", scheme="http")
    assert plain.status == 200 and plain.header("Strict-Transport-Security") is None, plain


def test_default_certificate_from_files(world, pki):
    fb = pki.certs["fallback"]
    p = world.start_proxy(https=True, extra=["--default-cert", fb.chain_path,
                                             "--default-key", fb.key_path])
    r = s_client(p.https_port, "unknown.tls.test")
    assert r.handshake_ok and cn(r.leaf[0]) == "fallback.tls.test", r
    r = s_client(p.https_port, None)
    assert r.handshake_ok and cn(r.leaf[0]) == "fallback.tls.test", r
    r = s_client(p.https_port, "rsa.tls.test")              # SNI entries still win
    assert r.handshake_ok and cn(r.leaf[0]) == "rsa.tls.test", r
    c = curl("fallback.tls.test", p.https_port, "/", cacert=pki.root_path)
    assert c.rc == 0, c          # 404 or a route: what matters is that it verified


# ---------------------------------------------------------------- bad Secrets

@pytest.mark.parametrize("host,ing,secret", BAD)
def test_bad_secret_refused_and_host_gets_default(world, host, ing, secret):
    log = world.agent_once.stderr() + world.agent_once.stdout()
    lines = [line for line in log.splitlines() if ing in line and secret in line]
    assert lines, "no agent log line names Ingress %s and Secret %s:\n%s" % (ing, secret, log)
    r = s_client(world.proxy.https_port, host)
    assert r.handshake_ok, r
    assert cn(r.leaf[0]) == DEFAULT_CN, r
    c = https(world, host)
    assert c.rc != 0, c                                    # no valid certificate for it
    for good in GOOD:                                      # the others are unaffected
        g = https(world, good)
        assert g.rc == 0 and g.status == 200, (good, g)


def test_refused_secrets_are_counted_in_the_node_metrics(world):
    """The issue asks for a log line and a metric: the agent's metrics reach the proxy's /metrics."""
    m = world.proxy.metrics()
    assert metric_sum(m, "gatehouse_agent_tls_secrets_refused") == len(BAD), m
    assert metric_sum(m, "gatehouse_agent_renders_total", result="ok") == 1
    assert metric_sum(m, "gatehouse_agent_diagnostics", severity="error") >= len(BAD)
    assert metric_sum(m, "gatehouse_http_requests_total") >= 0     # the proxy's own still there


def test_tls_files_are_private(world):
    d = os.path.join(world.state, "tls")
    assert stat.S_IMODE(os.stat(d).st_mode) & 0o077 == 0, "STATE/tls is open to others"
    files = sorted(os.listdir(d))
    assert len(files) >= 2 * 5, files                     # 5 good Secrets: cert + key each
    for f in files:
        mode = stat.S_IMODE(os.stat(os.path.join(d, f)).st_mode)
        assert mode == 0o600, "%s has mode %o" % (f, mode)
    keys = "".join(open(os.path.join(d, f)).read() for f in files)
    assert "not a key either" not in keys


# ---------------------------------------------------------------- Secret changed at run time

def test_secret_change_served_to_new_connections_old_connection_keeps_working(env, pki):
    host = "rot.tls.test"
    old = pki.leaf(host, key="rsa2048", file_name="rot-old")
    new = pki.leaf(host, key="p256", file_name="rot-new")
    base = [ingress_class()] + service_for("svc-app", [env.backend("app")]) + \
        [with_tls(ingress("rot", [route(host), route("other.tls.test")]),
                  [([host], "rot-tls"), (["other.tls.test"], "other-tls")])]
    other = pki.certs["other"]

    def docs(cert):
        return base + [tls_secret("rot-tls", cert.chain, cert.key),
                       tls_secret("other-tls", other.chain, other.key)]

    env.write_manifests(docs(old))
    env.start_agent()
    p = env.start_proxy(https=True)
    wait_until(lambda: s_client(p.https_port, host).leaf_fingerprint == old.fingerprint, 5,
               what="the first certificate served")
    held = TlsConn(p.https_port, host, cafile=pki.root_path)
    try:
        held.send(raw_request("GET", "/before", host))
        assert held.read_response().status == 200
        assert held.peer_fingerprint() == old.fingerprint

        t0 = time.monotonic()
        env.write_manifests(docs(new))
        wait_until(lambda: s_client(p.https_port, host).leaf_fingerprint == new.fingerprint, 10,
                   what="new connections to get the new certificate")
        print("secret change -> served to new connections in %.0f ms"
              % ((time.monotonic() - t0) * 1e3))
        r = curl(host, p.https_port, "/after", cacert=pki.root_path)
        assert r.rc == 0 and r.status == 200, r
        o = curl("other.tls.test", p.https_port, "/", cacert=pki.root_path)
        assert o.rc == 0 and o.status == 200, o

        for i in range(3):        # the established connection: same session, still serving
            held.send(raw_request("GET", "/still-%d" % i, host))
            r = held.read_response()
            assert r.status == 200 and r.json["path"] == "/still-%d" % i
        assert held.peer_fingerprint() == old.fingerprint

        # the replaced certificate and key leave STATE/tls (only rot's and other's files remain)
        tls_dir = os.path.join(env.state, "tls")

        def old_files_gone():
            files = os.listdir(tls_dir)
            text = "".join(open(os.path.join(tls_dir, f)).read() for f in files)
            return len(files) == 4 and old.key not in text and new.key in text
        wait_until(old_files_gone, 5, what="the old key to be removed from STATE/tls")
    finally:
        held.close()


# ---------------------------------------------------------------- least privilege

@pytest.mark.skipif(os.geteuid() != 0, reason="starts the agent as root and the proxy as nobody")
def test_proxy_as_unprivileged_user_reads_keys_the_agent_wrote_for_it(env, pki):
    """The agent (root) writes STATE/tls for proxy.user; the proxy, after dropping to that user,
    still loads a certificate that changes at run time - and the keys stay 0600."""
    import pwd
    import shutil
    import tempfile
    nobody = pwd.getpwnam("nobody")
    state = tempfile.mkdtemp(prefix="gatehouse-state-", dir="/tmp")   # pytest's tmp is 0700
    os.chmod(state, 0o755)
    try:
        env.state, env.routes = state, os.path.join(state, "routes.yaml")
        host = "priv.tls.test"
        first = pki.leaf(host, key="p256", file_name="priv-first")
        second = pki.leaf(host, key="rsa2048", file_name="priv-second")
        base = [ingress_class()] + service_for("svc-app", [env.backend("app")]) + \
            [with_tls(ingress("priv", [route(host)]), [([host], "priv-tls")])]
        cfg = env.write_config("proxy: {user: nobody}\n")
        env.render(base + [tls_secret("priv-tls", first.chain, first.key)], extra=["--config", cfg])
        p = env.start_proxy(https=True, extra=["--user", "nobody"])
        wait_until(lambda: s_client(p.https_port, host).leaf_fingerprint == first.fingerprint, 5,
                   what="the first certificate")

        env.render(base + [tls_secret("priv-tls", second.chain, second.key)],
                   extra=["--config", cfg])
        wait_until(lambda: s_client(p.https_port, host).leaf_fingerprint == second.fingerprint,
                   5, what="the certificate loaded after the proxy dropped to nobody")
        r = curl(host, p.https_port, "/", cacert=pki.root_path)
        assert r.rc == 0 and r.status == 200, r

        tls_dir = os.path.join(state, "tls")
        st = os.stat(tls_dir)
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (nobody.pw_uid, 0o700)
        for f in os.listdir(tls_dir):
            st = os.stat(os.path.join(tls_dir, f))
            assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (nobody.pw_uid, 0o600), f
    finally:
        shutil.rmtree(state, ignore_errors=True)
