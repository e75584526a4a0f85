"""Local servers speaking the public APIs' wire protocols — Alpaca's websocket stream and historical REST API,
FRED's XML API, Finnhub's REST API and Bluesky's XRPC — so that the real client libraries can be pointed at
them: by the tests, the chaos soak and the demo (which has no API keys). They import nothing of the project,
so every layer may use them (tests/test_layers.py)."""
