"""A header timeout for uvicorn's h11 protocol, which has none: a connection that opens, or starts
a request, and does not finish its request headers within the timeout is closed. (uvicorn's
`timeout_keep_alive` only runs between a response and the next request's first byte.) Bodies
that stall are cut by http_security.LimitBody with the same timeout.
"""

from __future__ import annotations

import asyncio
import logging

from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("mcp_server_conversations.http.app")


class HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol closing connections whose request headers are late."""

    header_timeout: float = 30.0  # set per server by `with_header_timeout`
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not self._awaiting_headers():
            self._disarm()
        elif self._header_timer is None:  # the first bytes of a request after a response
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _awaiting_headers(self) -> bool:
        """No request in progress: the next one's headers are all the connection may be waiting for."""
        return self.cycle is None or self.cycle.response_complete

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout, self._expired)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _expired(self) -> None:
        self._header_timer = None
        if self._awaiting_headers() and not self.transport.is_closing():
            log.info("closing a connection whose request headers did not arrive within %g s", self.header_timeout)
            self.transport.close()


def with_header_timeout(seconds: float) -> type[HeaderTimeoutProtocol]:
    """The protocol class to give uvicorn (`http=`) for this timeout."""
    return type("HeaderTimeoutProtocol", (HeaderTimeoutProtocol,), {"header_timeout": seconds})
