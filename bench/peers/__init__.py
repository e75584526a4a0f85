"""`make bench-peers` (bench/peers/run.py): the systems users would deploy instead of stock_consume, each run
in an environment of its own under `.venv-peers/` (pinned in bench/peers/requirements-*.txt), on the same
prefilled topic and store, measured the way bench/run.py measures its own contenders."""
