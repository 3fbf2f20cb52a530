"""Slow-loris on the real services (the Procfile's gateway and inference): connections that send their request head
or body a byte at a time are answered 408 and closed once the deadline passes, and other clients are served
meanwhile."""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.stack import Stack, start_stack

HEADER_TIMEOUT_S, BODY_TIMEOUT_S = 2, 3
SLOW_HEAD = b"GET /healthz HTTP/1.1\r\nHost: slow\r\nX-Padding: " + b"x" * 100_000
SLOW_BODY = (
    b"POST /classify HTTP/1.1\r\nHost: slow\r\nContent-Type: multipart/form-data; boundary=slow\r\n"
    b"Content-Length: 100000\r\n\r\n--slow\r\nContent-Disposition: form-data; name=file; filename=a.csv\r\n\r\n"
)


@pytest.fixture(scope="module")
def slow_stack(database_url, azurite, active_models) -> Iterator[Stack]:
    with start_stack(
        ["inference", "gateway"],
        database_url=database_url,
        artifact_connection_string=azurite.connection_string,
        env={"ECG_HTTP_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S), "ECG_HTTP_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S)},
    ) as running:
        yield running


def trickle(port: int, payload: bytes, connections: int, first: int = 0, give_up_s: float = 60.0) -> list[bytes]:
    """Open ``connections`` connections and send each ``payload`` (after its first ``first`` bytes at once) a byte
    every 0.1 s until the server closes them; returns what each received. Fails if one is still open after
    ``give_up_s`` (the server would hold it forever without deadlines)."""
    sockets = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(connections)]
    for sock in sockets:
        sock.sendall(payload[:first])
    received = {sock: b"" for sock in sockets}
    open_ = set(sockets)
    deadline = time.monotonic() + give_up_s
    offset = first
    try:
        while open_ and time.monotonic() < deadline:
            readable, _, _ = select.select(list(open_), [], [], 0.1)
            for sock in readable:
                try:
                    data = sock.recv(65536)
                except ConnectionError:
                    data = b""
                received[sock] += data
                if not data:
                    open_.discard(sock)
            for sock in list(open_):
                try:
                    sock.send(payload[offset : offset + 1])
                except OSError:  # reset by the server
                    open_.discard(sock)
            offset += 1
        assert not open_, f"{len(open_)} of {connections} slow connections still open after {give_up_s} s"
    finally:
        for sock in sockets:
            sock.close()
    return list(received.values())


@pytest.mark.parametrize("service", ["gateway", "inference"])
def test_a_request_head_sent_a_byte_at_a_time_is_cut_off_with_408(slow_stack, service):
    answers = trickle(slow_stack.port(service), SLOW_HEAD, connections=30)
    assert all(answer.startswith(b"HTTP/1.1 408 ") for answer in answers), {a[:40] for a in answers}
    # the service answers others as before
    assert httpx.get(f"{slow_stack.url(service)}/healthz", timeout=10).status_code == 200
    log = slow_stack[service].log()
    assert f"the request's headers took longer than {HEADER_TIMEOUT_S:g} s" in log


@pytest.mark.parametrize("service", ["gateway", "inference"])
def test_a_body_sent_a_byte_at_a_time_is_cut_off_with_408(slow_stack, service):
    answers = trickle(slow_stack.port(service), SLOW_BODY + b"x" * 100_000, connections=10, first=len(SLOW_BODY))
    assert all(answer.startswith(b"HTTP/1.1 408 ") for answer in answers), {a[:40] for a in answers}
    assert httpx.get(f"{slow_stack.url(service)}/healthz", timeout=10).status_code == 200
    assert f"the request's body took longer than {BODY_TIMEOUT_S:g} s" in slow_stack[service].log()


def test_a_kept_alive_connection_serves_requests_one_after_another(slow_stack):
    """The deadlines are per request: a connection kept alive for longer than them serves every request."""
    with httpx.Client(base_url=slow_stack.url("gateway"), timeout=10) as client:
        for _ in range(3):
            assert client.get("/healthz").status_code == 200
            time.sleep(1.5)  # under uvicorn's keep-alive (5 s), over the deadlines together
