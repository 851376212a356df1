"""uvicorn's h11 protocol with a time limit on a request's headers.

uvicorn closes a keep-alive connection left idle after a response, but a connection that sends
nothing, or trickles its headers a byte at a time (slowloris), it keeps open for ever: a handful
of them fill its connection limit. Here every request's headers must arrive within a set time of
the connection opening, or of the last response, or the connection is closed.
"""

from __future__ import annotations

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


class TimedH11(H11Protocol):
    header_timeout: float = 10.0
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_late)

    def _headers_late(self) -> None:
        # Still waiting for the next request's headers (h11 has not seen them complete) and no
        # request of this connection is being answered: the client had its time.
        waiting = self.conn.their_state is h11.IDLE and (self.cycle is None or self.cycle.response_complete)
        if waiting and not self.transport.is_closing():
            self.transport.close()


def timed_h11(header_timeout: float) -> type[TimedH11]:
    """The protocol class for uvicorn's ``http`` setting, with this header time limit."""
    return type("TimedH11", (TimedH11,), {"header_timeout": header_timeout})
