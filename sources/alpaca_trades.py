"""Alpaca live trades through alpaca-py's `StockDataStream` (websocket, msgpack, IEX feed by default).

Delivery guarantee: at-most-once. A live feed cannot be replayed: trades published while the stream is
disconnected or the dataflow is down are not recovered (backfill them from Alpaca's historical API).
While connected, every trade alpaca-py hands over is queued and emitted; the queue is unbounded so a slow
Kafka never makes the websocket drop frames.

alpaca-py runs its own asyncio loop, so the stream lives in a daemon thread and `drain()` hands its trades
to the Bytewax source. alpaca-py reconnects by itself with backoff; credentials Alpaca rejects stop the
stream and surface as `AlpacaAuthError` instead of an endless reconnect loop.
"""

from __future__ import annotations

import logging
import queue
import threading

from alpaca.data.enums import DataFeed
from alpaca.data.live import StockDataStream

from marketstream.trades import Trade

log = logging.getLogger(__name__)


class AlpacaAuthError(RuntimeError):
    """Alpaca refused the API_KEY_ALPACA / API_SECRET_ALPACA pair (or the account's data subscription)."""


class _Stream(StockDataStream):
    """StockDataStream that stops, instead of reconnecting forever, when authentication is refused."""

    auth_failure: str | None = None

    async def _auth(self) -> None:
        try:
            await super()._auth()
        except ValueError as exc:
            self.auth_failure = str(exc)
            await self.stop_ws()
            raise


class AlpacaTradeStream:
    """`feed`: Alpaca's data feed (`iex`, `sip`); `url_override`: another websocket server (tests)."""

    def __init__(self, api_key: str, api_secret: str, *, feed: str = "iex", url_override: str | None = None):
        self._stream = _Stream(api_key, api_secret, feed=DataFeed(feed), url_override=url_override or None)
        self._trades: queue.SimpleQueue[Trade] = queue.SimpleQueue()
        self._symbols: set[str] = set()
        self._thread: threading.Thread | None = None

    async def _on_trade(self, trade) -> None:
        self._trades.put(
            Trade(
                symbol=trade.symbol,
                price=float(trade.price),
                size=float(trade.size),
                timestamp=trade.timestamp,
                trade_id=str(trade.id),
                source="alpaca",
                exchange=str(trade.exchange) if trade.exchange is not None else None,
                conditions=tuple(trade.conditions or ()),
                tape=trade.tape,
            )
        )

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def follow(self, symbols: list[str]) -> None:
        """Subscribe to exactly `symbols`, starting the stream on first use."""
        wanted = set(symbols)
        added, removed = sorted(wanted - self._symbols), sorted(self._symbols - wanted)
        if added:
            self._stream.subscribe_trades(self._on_trade, *added)
        if removed:
            self._stream.unsubscribe_trades(*removed)
        self._symbols = wanted
        if self._thread is None and wanted:
            self._thread = threading.Thread(target=self._stream.run, name="alpaca-stream", daemon=True)
            self._thread.start()
            log.info("alpaca: streaming trades for %d symbols", len(wanted))
        elif added or removed:
            log.info("alpaca: subscribed %s, unsubscribed %s", added, removed)

    def drain(self, limit: int = 10_000) -> list[Trade]:
        """Trades received since the last call; raises AlpacaAuthError if Alpaca refused the keys."""
        if self._stream.auth_failure is not None:
            raise AlpacaAuthError(
                f"Alpaca rejected the credentials in API_KEY_ALPACA / API_SECRET_ALPACA: {self._stream.auth_failure}"
            )
        out = []
        try:
            while len(out) < limit:
                out.append(self._trades.get_nowait())
        except queue.Empty:
            pass
        return out

    def close(self) -> None:
        if self._thread is not None:
            if self._stream._loop is not None and self._stream._loop.is_running():
                self._stream.stop()
            self._thread.join(timeout=10)
            self._thread = None
