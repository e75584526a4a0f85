"""`marketstream serve`: a web console over the same Kafka and lake the command line reads — the overview
of `marketstream status` refreshed live, one-minute candlesticks of a ticker-day growing as `bars_consume`
commits, the tables' commits with their Kafka offsets, the newest dead letters, and SQL over the views of
`marketstream sql`, locked down. It writes nothing.

- Listens on loopback unless `--host` says otherwise, and then only with `CONSOLE_TOKEN` set, which every
  request must carry (`access`).
- Every text read from Kafka or the lake reaches the page as text, never as markup (`app`, `static/console.js`).
- Works offline: its script, style and charting library (TradingView's lightweight-charts 5.2.1, Apache-2.0,
  `static/lightweight-charts.LICENSE`) are served from the package.
"""
