# marketstream — the two commands that matter: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo console console-screenshots test-console monitoring monitoring-down test-monitoring test test-unit test-faults test-signals test-clock-ahead test-cluster chaos bench bench-peers test-interop stack stack-down stack-cluster-down stack-status toxiproxy toxiproxy-down report clean

$(STAMP): pyproject.toml
	@echo "==> creating the Python environment in $(VENV) (first run takes a few minutes)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --progress-bar off -e '.[test,charts]'
	@touch $(STAMP)

.env:
	cp .env.example .env

## the browser the console's tests drive (Debian's chromium; Playwright downloads none)
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null

## console: the web console on http://127.0.0.1:8080/ (CONSOLE_ARGS="--host 0.0.0.0" needs CONSOLE_TOKEN)
console: $(STAMP) .env
	$(BIN)/marketstream serve $(CONSOLE_ARGS)

## test-console: the console's browser tests alone (part of `make test` too); console-screenshots: the same,
## writing docs/console-*.png
test-console: $(STAMP) $(CHROMIUM) stack
	$(BIN)/python -m pytest tests/integration/test_console.py $(PYTEST_ARGS)

console-screenshots: $(STAMP) $(CHROMIUM) stack
	CONSOLE_SCREENSHOTS=1 $(BIN)/python -m pytest tests/integration/test_console.py $(PYTEST_ARGS)

## demo: set everything up, then synthetic trades -> Kafka -> stock_consume -> MinIO, and show what landed
demo: $(STAMP) .env stack
	$(BIN)/python -m pipelines.cli demo $(if $(DEMO_SECONDS),--seconds $(DEMO_SECONDS),)

## test: the whole suite, integration tests against the real local stack included (the minutes-long fault
## runs aside: `make test-faults`)
test: $(STAMP) $(CHROMIUM) stack
	$(BIN)/python -m pytest -m "not faults and not interop and not monitoring" $(PYTEST_ARGS)

## test-faults: the fault runs: a Bytewax cluster losing a process mid-stream, network faults through
## Toxiproxy (built from its Go module on first use by stack/toxiproxy.sh)
test-faults: $(STAMP) stack
	stack/toxiproxy.sh install
	$(BIN)/python -m pytest -m faults $(PYTEST_ARGS)

## test-signals: the signals' proofs at length: 50 generated examples (SIGNALS_EXAMPLES=…) of the differential test, the writer
## killed with SIGKILL mid-round and restarted, and two deployments, one slow, one killed, while late data arrives (marker `faults`); ~3 min
test-signals: $(STAMP) stack
	SIGNALS_EXAMPLES=$(or $(SIGNALS_EXAMPLES),50) $(BIN)/python -m pytest -m "faults or not faults" tests/integration/test_signals.py $(PYTEST_ARGS)

## test-unit: only the tests that need no servers
test-unit: $(STAMP)
	$(BIN)/python -m pytest -m "not integration" $(PYTEST_ARGS)

## test-clock-ahead: the tests that need no servers, with the clock a year ahead (libfaketime): no test may
## depend on the day it runs
test-clock-ahead: $(STAMP)
	faketime -f '+365d' $(BIN)/python -m pytest -m "not integration" -p no:cacheprovider $(PYTEST_ARGS)

## bench: throughput, freshness and memory of stock_consume against the raw limit (BENCH_ARGS="--trades 500000")
bench: $(STAMP) .env stack
	$(BIN)/python -m bench.run $(BENCH_ARGS)

## bench-peers: stock_consume and the floor against Spark Structured Streaming -> Delta and Quix Streams -> Parquet,
## on one prefilled topic (BENCH_ARGS="--trades 500000"); each peer in an environment of its own under .venv-peers/
PEERS := .venv-peers
$(PEERS)/%/.installed: bench/peers/requirements-%.txt
	$(PYTHON) -m venv $(PEERS)/$*
	$(PEERS)/$*/bin/pip install --quiet --progress-bar off -r $<
	@touch $@

bench-peers: $(STAMP) $(PEERS)/spark/.installed $(PEERS)/quix/.installed .env stack
	$(BIN)/python -m bench.peers.run $(BENCH_ARGS)

## test-interop: Spark (the peers' environment) reads the tables the project writes and answers the differential
## query set as a plain full read does; outside `make test` (marker `interop`)
test-interop: $(STAMP) $(PEERS)/spark/.installed stack
	$(BIN)/python -m pytest -m interop tests/interop $(PYTEST_ARGS)

## monitoring: Prometheus natively (Debian's package, installed when missing) on 127.0.0.1:9090 (PROMETHEUS_PORT),
## scraping this host's dataflows with monitoring/prometheus.yml; `make monitoring-down` stops it
monitoring:
	stack/monitoring.sh up

monitoring-down:
	stack/monitoring.sh down

## test-monitoring: every PromQL expression of the Grafana dashboard evaluated by that Prometheus scraping running
## dataflows, each returning data (marker `monitoring`, minutes long: outside `make test`)
test-monitoring: $(STAMP) stack
	$(BIN)/python -m pytest -m monitoring tests/integration/test_prometheus.py $(PYTEST_ARGS)

## stack: install (cached) and start Kafka, MinIO and PostgreSQL on loopback
stack:
	stack/stack.sh up

stack-down:
	stack/stack.sh down

stack-status:
	stack/stack.sh status

## toxiproxy: build (cached) and start Toxiproxy on 127.0.0.1:8474 (TOXIPROXY_PORT), a TCP fault proxy
toxiproxy:
	stack/toxiproxy.sh up

toxiproxy-down:
	stack/toxiproxy.sh down

report: $(STAMP) .env
	$(BIN)/python -m pipelines.cli report

clean: stack-down toxiproxy-down
	rm -rf .stack $(VENV) $(PEERS)

## test-cluster: the cluster profile of the stack (three Kafka nodes with SASL_SSL, four MinIO nodes over TLS,
## PostgreSQL with TLS only, on ports 19192-19432) started from .env.example + .env.cluster.example, then the
## tests that need it (tests/cluster/); `make stack-cluster-down` stops it
CLUSTER_ENV := .stack-cluster/env
$(CLUSTER_ENV): .env.example .env.cluster.example
	mkdir -p $(dir $@)
	cat .env.example .env.cluster.example >$@

test-cluster: $(STAMP) $(CLUSTER_ENV)
	ENV_FILE=$(CLUSTER_ENV) stack/stack.sh up
	CLUSTER_ENV_FILE=$(CLUSTER_ENV) $(BIN)/python -m pytest tests/cluster -m cluster $(PYTEST_ARGS)

stack-cluster-down:
	ENV_FILE=$(CLUSTER_ENV) stack/stack.sh down

## chaos: a seeded, randomized fault soak on the cluster profile, then every acknowledged message reconciled
## with the lake (README, *Chaos*); DURATION seconds of faults (default 180), SEED replays a run's schedule,
## MEAN_GAP seconds between faults on average (default 10; longer leaves more faults alone), KINDS only these
## fault kinds (comma-separated, e.g. kill_broker,kill_minio_node; default every kind),
## CHAOS_ENV another environment file (its ports, TOXIPROXY_PORT, CHAOS_PROXY_PORT). Exit 1 if anything was
## lost or doubled. Report in chaos/results/. It empties the datasets' topics and buckets of that stack.
CHAOS_ENV ?= $(CLUSTER_ENV)
DURATION ?= 180
chaos: $(STAMP) $(CLUSTER_ENV)
	stack/toxiproxy.sh install
	ENV_FILE=$(CHAOS_ENV) stack/stack.sh up
	$(BIN)/python -m chaos.run --env-file $(CHAOS_ENV) --duration $(DURATION) $(if $(SEED),--seed $(SEED),) $(if $(MEAN_GAP),--mean-gap $(MEAN_GAP),) $(if $(KINDS),--kinds $(KINDS),)
