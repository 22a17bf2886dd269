"""Command-line behaviour of both programs: --help, --version, bad flags, bad config, a busy
port."""
import os
import socket
import subprocess

import pytest

from conftest import AGENT, PROXY, _binary
import helpers


def run(argv, timeout=10):
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("prog,flag", [(PROXY, "--routes"), (AGENT, "--manifests")])
def test_help_and_version(prog, flag):
    r = run([_binary(prog), "--help"])
    assert r.returncode == 0, r
    assert flag in r.stdout + r.stderr
    v = run([_binary(prog), "--version"])
    assert v.returncode == 0, v
    assert (v.stdout + v.stderr).strip(), "empty --version output"


@pytest.mark.parametrize("prog", [PROXY, AGENT])
def test_unknown_flag_is_an_error(prog):
    r = run([_binary(prog), "--no-such-flag"])
    assert r.returncode != 0
    assert "no-such-flag" in r.stderr, r.stderr


def test_proxy_bad_config_names_file_and_line(env):
    cfg = env.write_config("proxy:\n  workers: 1\n  maxBodyBytes: [1, 2]\n")
    r = run([_binary(PROXY), "--config", cfg, "--routes", env.routes,
             "--http", "127.0.0.1:%d" % helpers.free_port(),
             "--admin", "127.0.0.1:%d" % helpers.free_port()])
    assert r.returncode != 0
    assert "gatehouse-proxy: error:" in r.stderr, r.stderr
    assert cfg in r.stderr and ":3" in r.stderr, r.stderr


def test_proxy_port_in_use_is_reported(env):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = run([_binary(PROXY), "--routes", env.routes, "--http", "127.0.0.1:%d" % port,
                 "--admin", "127.0.0.1:%d" % helpers.free_port()])
    assert r.returncode != 0
    assert "gatehouse-proxy: error:" in r.stderr and str(port) in r.stderr, r.stderr


def test_agent_unreadable_manifest_dir_fails(env):
    r = run([_binary(AGENT), "--manifests", env.manifests + "/missing", "--state-dir", env.state,
             "--once"])
    assert r.returncode != 0
    assert "missing" in r.stderr, r.stderr


def test_agent_notify_fd_says_ready_after_the_first_routes(env):
    """s6 readiness: one newline on --notify-fd once routes.yaml is written, and only then."""
    env.write_manifests([helpers.ingress_class(default=True)])
    read_end, write_end = os.pipe()
    p = subprocess.Popen([_binary(AGENT), "--manifests", env.manifests, "--state-dir", env.state,
                          "--config", "/dev/null", "--notify-fd", str(write_end)],
                         pass_fds=(write_end,), stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    os.close(write_end)
    try:
        with os.fdopen(read_end, "rb") as r:
            assert r.read() == b"\n"                  # EOF right after: the agent closed it
        assert os.path.exists(env.routes)
        assert p.poll() is None                       # and it goes on watching
    finally:
        p.terminate()
        p.wait(timeout=10)
    r = run([_binary(AGENT), "--manifests", env.manifests, "--state-dir", env.state,
             "--notify-fd", "99", "--once"])
    assert r.returncode == 2 and "not an open descriptor" in r.stderr, r.stderr
