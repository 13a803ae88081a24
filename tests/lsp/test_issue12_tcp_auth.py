"""Issue 12 #12: `codefill lsp --tcp` authenticates its clients. With CODEFILL_LSP_TOKEN set, a connection's
`initialize` must carry the token as `initializationOptions.token` (else InvalidRequest, the connection is closed and
the server listens on for the real client); without a token only connections from this OS user on this machine are
served (the owner of the client's socket, from /proc/net/tcp)."""

import os
import socket
import subprocess
import sys
import time

import pytest
from test_lsp_tcp import RawTcp, free_port

from codefill.lsp import server as lsp_server

INVALID = -32600
linux_only = pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="peer owners are read from /proc/net/tcp")


def initialize(conn, msg_id, options=None):
    conn.send({"jsonrpc": "2.0", "id": msg_id, "method": "initialize", "params": {
        "processId": None, "rootUri": None, "capabilities": {}, "initializationOptions": options}})
    return conn.answer(msg_id)


def start(port, env_extra=None, cmd=None):
    env = dict(os.environ, **(env_extra or {}))
    env.pop("CODEFILL_MODEL", None)
    if env_extra is None:
        env.pop("CODEFILL_LSP_TOKEN", None)
    proc = subprocess.Popen(cmd or [sys.executable, "-m", "codefill", "lsp", "--tcp", f"127.0.0.1:{port}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
            time.sleep(0.2)  # that probe connection closed before initialize: the server listens on
            return proc
        except OSError:
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.1)
    proc.kill()
    pytest.fail("the server never listened")


def closed(conn):
    try:
        while True:
            conn.read()
    except (EOFError, ConnectionError):
        return True
    except socket.timeout:
        return False


def test_with_a_token_only_the_client_that_presents_it_is_served():
    port = free_port()
    proc = start(port, {"CODEFILL_LSP_TOKEN": "s3cret-token"})
    try:
        for options in (None, {"threads": 1}, {"token": "wrong"}, {"token": 12}):
            c = RawTcp(port, timeout=10)
            res = initialize(c, 1, options)
            assert res["error"]["code"] == INVALID and "token" in res["error"]["message"], res
            assert closed(c)  # the connection is closed ...
            c.close()
            assert proc.poll() is None  # ... and the server waits for the real client
        c = RawTcp(port, timeout=10)
        c.send({"jsonrpc": "2.0", "id": 1, "method": "shutdown"})  # nothing before an authenticated initialize
        assert c.answer(1)["error"]["code"] == -32002
        res = initialize(c, 2, {"token": "s3cret-token", "threads": 1})
        assert "result" in res, res
        shown = []
        c.send({"jsonrpc": "2.0", "id": 3, "method": "codefill/noSuchMethod"})
        while (m := c.read()).get("id") != 3:
            shown.append(m)
        assert m["error"]["code"] == -32601
        assert not any("token" in str(s.get("params")) for s in shown), shown  # the token is not a setting
        c.send({"jsonrpc": "2.0", "id": 4, "method": "shutdown"})
        assert c.answer(4)["result"] is None
        c.send({"jsonrpc": "2.0", "method": "exit"})
        assert proc.wait(30) == 0
    finally:
        proc.kill()
        proc.wait()


# `codefill lsp --tcp` where every connection seems to come from another user (one cannot become another user in a
# test without root): the peer lookup is replaced, the rest is the real server.
OTHER_USER = r"""
import os, sys
import codefill.lsp.server as s
s._socket_owner = lambda peer, local: os.getuid() + 1
sys.argv = ["codefill", "lsp", "--tcp", sys.argv[1]]
from codefill.cli.main import main
main()
"""


def test_without_a_token_a_connection_of_another_user_is_refused():
    port = free_port()
    proc = start(port, cmd=[sys.executable, "-c", OTHER_USER, f"127.0.0.1:{port}"])
    try:
        c = RawTcp(port, timeout=10)
        refused = c.read()
        assert refused["method"] == "window/showMessage" and "another user" in refused["params"]["message"]
        assert closed(c)
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


@linux_only
def test_the_owner_of_a_loopback_connection_is_found():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        client = socket.create_connection(listener.getsockname())
        conn, _ = listener.accept()
        with client, conn:
            peer = lsp_server._endpoint(conn.getpeername())
            local = lsp_server._endpoint(conn.getsockname())
            assert lsp_server._socket_owner(peer, local) == os.getuid()
            assert lsp_server._socket_owner(local, peer) == os.getuid()  # the server's own end, the other way round
            assert lsp_server._socket_owner((peer[0], 1), local) is None


def test_proc_net_tcp_addresses_are_read_in_host_byte_order():
    import ipaddress

    if sys.byteorder != "little":
        pytest.skip("the fixture rows are a little-endian machine's")
    assert lsp_server._proc_endpoint("0100007F:1F90") == (ipaddress.ip_address("127.0.0.1"), 8080)
    v6_loopback = "00000000000000000000000001000000:0050"
    assert lsp_server._proc_endpoint(v6_loopback) == (ipaddress.ip_address("::1"), 80)
    mapped = "0000000000000000FFFF00000100007F:0050"  # ::ffff:127.0.0.1, as a dual-stack socket shows it
    assert lsp_server._proc_endpoint(mapped) == (ipaddress.ip_address("127.0.0.1"), 80)


SHORT_WAIT = r"""
import sys
import codefill.lsp.server as s
s.INITIALIZE_WAIT_S = 1.0
sys.argv = ["codefill", "lsp", "--tcp", sys.argv[1]]
from codefill.cli.main import main
main()
"""


def test_a_connection_that_never_initializes_does_not_hold_the_slot():
    port = free_port()
    proc = start(port, {"CODEFILL_LSP_TOKEN": "t0ken"}, cmd=[sys.executable, "-c", SHORT_WAIT, f"127.0.0.1:{port}"])
    try:
        idle = RawTcp(port, timeout=10)  # connects and sends nothing
        t0 = time.monotonic()
        assert closed(idle) and time.monotonic() - t0 < 8
        idle.close()
        c = RawTcp(port, timeout=10)
        assert "result" in initialize(c, 1, {"token": "t0ken"})
        time.sleep(1.5)  # an initialized client is not timed out
        c.send({"jsonrpc": "2.0", "id": 2, "method": "shutdown"})
        assert c.answer(2)["result"] is None
        c.send({"jsonrpc": "2.0", "method": "exit"})
        assert proc.wait(30) == 0
    finally:
        proc.kill()
        proc.wait()
