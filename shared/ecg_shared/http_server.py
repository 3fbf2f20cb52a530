"""How the two HTTP services (gateway, inference) run: uvicorn, with deadlines on reading each request.

uvicorn reads a request's head and body for as long as the client takes: 60 connections that send their headers a
byte at a time hold the server forever (slow-loris). :class:`SlowClientTimeouts` is uvicorn's own httptools
protocol with two deadlines:

- the request head (request line and headers) must be complete ``ECG_HTTP_HEADER_TIMEOUT_S`` after the connection
  opened or, on a kept-alive connection, after the request's first byte;
- the body must be complete ``ECG_HTTP_BODY_TIMEOUT_S`` after the head.

A client that misses one gets ``408 Request Timeout`` and the connection is closed, gracefully: the 408 is followed by
the end of our side of the stream, what the client still sends is read and dropped, and the socket is closed
:data:`LINGER_S` later (or when the client closes first). Closing at once, with the client's next bytes unread, makes
the kernel answer with a reset, and a reset can destroy the 408 before the client has read it (the "lingering close"
of Apache and nginx). :func:`serve` runs uvicorn's
command line (``--host``, ``--port``, ``--workers`` ...) with this protocol. Imported by the services only, which
install ``uvicorn[standard]``.
"""

from __future__ import annotations

import asyncio
import logging

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ecg_shared.settings import get_settings

log = logging.getLogger("uvicorn.error")
PROTOCOL = "ecg_shared.http_server:SlowClientTimeouts"
REQUEST_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
LINGER_S = 2.0  # how long a 408's connection stays open for reading (and dropping) what the client still sends


class SlowClientTimeouts(HttpToolsProtocol):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        settings = get_settings()
        self.header_timeout_s, self.body_timeout_s = settings.http_header_timeout_s, settings.http_body_timeout_s
        self._deadline: asyncio.TimerHandle | None = None
        self._lingering = False

    def data_received(self, data: bytes) -> None:
        if self._lingering:  # answered 408 already: the rest of the request is dropped unread
            return
        super().data_received(data)

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_timeout_s, "headers")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:  # a kept-alive connection's next request (the first is timed from the connection)
            self._arm(self.header_timeout_s, "headers")

    def on_headers_complete(self) -> None:
        self._arm(self.body_timeout_s, "body")
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, seconds: float, part: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired, part, seconds)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self, part: str, seconds: float) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
        log.warning("closing the connection of %s: the request's %s took longer than %g s", client, part, seconds)
        if self.cycle is None or self.cycle.response_complete or not self.cycle.response_started:
            self.transport.write(REQUEST_TIMEOUT)
            if self.transport.can_write_eof():
                self._lingering = True
                self.transport.write_eof()  # the 408, then our end of the stream
                if self.cycle is not None and not self.cycle.response_complete:
                    self.cycle.disconnected = True  # the app (waiting for a body) hears the client is gone
                    self.cycle.message_event.set()
                self.loop.call_later(LINGER_S, self.transport.close)
                return
        self.transport.close()


def serve(app: str, argv: list[str], prog_name: str) -> None:
    """uvicorn's command line for ``app`` with ``argv`` (its options), served with :class:`SlowClientTimeouts`."""
    from uvicorn.main import main as command  # the click command of `uvicorn`

    with command.make_context(prog_name, [app, *argv]) as context:
        context.params["http"] = PROTOCOL  # uvicorn imports it by this path, in every worker process
        command.invoke(context)
