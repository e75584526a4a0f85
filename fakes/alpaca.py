"""A local server speaking Alpaca's market-data websocket protocol (msgpack frames), for alpaca-py.

Protocol as alpaca-py expects it: on connect the server sends `[{"T": "success", "msg": "connected"}]`;
the client sends `{"action": "auth", "key", "secret"}` and gets `authenticated` or an `error` with
code 402; then `{"action": "subscribe", "trades": [...]}` is acknowledged with a `subscription` message
and trades follow as `{"T": "t", "S", "i", "x", "p", "s", "t", "c", "z"}` with `t` a msgpack Timestamp.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime

import msgpack
from websockets.asyncio.server import serve


def _pack(messages: list[dict]) -> bytes:
    return msgpack.packb(messages, use_bin_type=True, datetime=False)


class FakeAlpacaStream:
    def __init__(self, key: str = "test-key", secret: str = "test-secret"):
        self.key, self.secret = key, secret
        self.connections = 0
        self.auth_attempts = 0
        self.subscribed: set[str] = set()
        self._pending: asyncio.Queue | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self.port = 0
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v2/iex"

    def __enter__(self) -> "FakeAlpacaStream":
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def publish(self, symbol: str, trade_id: int, price: float, size: int, at: datetime) -> None:
        """Queue one trade for every subscribed client."""
        trade = {
            "T": "t", "S": symbol, "i": trade_id, "x": "V", "p": price, "s": size,
            "t": msgpack.Timestamp.from_datetime(at), "c": ["@"], "z": "C",
        }
        self._loop.call_soon_threadsafe(self._pending.put_nowait, trade)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._pending = asyncio.Queue()
        self._stop = asyncio.Event()
        async with serve(self._session, "127.0.0.1", 0) as server:
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop.wait()

    async def _session(self, ws) -> None:
        self.connections += 1
        await ws.send(_pack([{"T": "success", "msg": "connected"}]))
        auth = msgpack.unpackb(await ws.recv())
        self.auth_attempts += 1
        if auth.get("action") != "auth" or (auth.get("key"), auth.get("secret")) != (self.key, self.secret):
            await ws.send(_pack([{"T": "error", "code": 402, "msg": "auth failed"}]))
            await ws.close()
            return
        await ws.send(_pack([{"T": "success", "msg": "authenticated"}]))
        while True:
            receive = asyncio.ensure_future(ws.recv())
            pending = asyncio.ensure_future(self._pending.get())
            done, _ = await asyncio.wait({receive, pending}, return_when=asyncio.FIRST_COMPLETED)
            if receive in done:
                pending.cancel()
                try:
                    request = msgpack.unpackb(receive.result())
                except Exception:  # connection closed
                    return
                if request.get("action") == "subscribe":
                    self.subscribed |= set(request.get("trades", []))
                elif request.get("action") == "unsubscribe":
                    self.subscribed -= set(request.get("trades", []))
                await ws.send(_pack([{"T": "subscription", "trades": sorted(self.subscribed), "quotes": [], "bars": []}]))
            else:
                receive.cancel()
                trade = pending.result()
                if trade["S"] in self.subscribed:
                    await ws.send(_pack([trade]))
