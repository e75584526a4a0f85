#!/usr/bin/env bash
# The stack's `monitoring` profile without Docker: Prometheus, natively (Debian's `prometheus` package,
# installed with apt-get when missing), scraping the dataflows of this host with the project's configuration
# (monitoring/prometheus.yml), listening on loopback only, stopped by the pid this script recorded.
#
#   stack/monitoring.sh up       install when missing, start, wait until Prometheus is ready
#   stack/monitoring.sh down     stop what `up` started
#   stack/monitoring.sh status   say whether it runs
#
# PROMETHEUS_PORT (default 9090) is where it listens; PROMETHEUS_CONFIG (default monitoring/prometheus.yml)
# another scrape configuration (the tests give it one with their own ports). Data, log and pid live under
# $STACK_DIR/prometheus (default .stack/prometheus). Grafana is left to `docker compose --profile monitoring`.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STACK_DIR=${STACK_DIR:-$REPO/.stack}
HOME_DIR=$STACK_DIR/prometheus
PORT=${PROMETHEUS_PORT:-9090}
CONFIG=${PROMETHEUS_CONFIG:-$REPO/monitoring/prometheus.yml}
PID_FILE=$HOME_DIR/prometheus.pid

say() { echo "[monitoring] $*"; }
# shellcheck source=stack/pidfile.sh
. "$REPO/stack/pidfile.sh"
alive() { pid_file_alive "$PID_FILE"; }

install() {
  command -v prometheus >/dev/null && return
  say "installing Debian's prometheus package"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  # the package starts a system service on 9090; this profile runs its own Prometheus
  (systemctl disable --now prometheus || service prometheus stop || true) >/dev/null 2>&1
}

up() {
  install
  mkdir -p "$HOME_DIR/data"
  if alive; then say "prometheus already running (pid $(cat "$PID_FILE")) on 127.0.0.1:$PORT"; return; fi
  promtool check config "$CONFIG" >/dev/null
  say "starting prometheus on 127.0.0.1:$PORT with $CONFIG"
  nohup prometheus --config.file="$CONFIG" --web.listen-address="127.0.0.1:$PORT" \
    --storage.tsdb.path="$HOME_DIR/data" --storage.tsdb.retention.time=2d \
    >"$HOME_DIR/prometheus.log" 2>&1 &
  echo $! >"$PID_FILE"
  for _ in $(seq 1 120); do
    if curl -fsS "http://127.0.0.1:$PORT/-/ready" >/dev/null 2>&1; then say "ready: http://127.0.0.1:$PORT/"; return; fi
    alive || { tail -n 20 "$HOME_DIR/prometheus.log" >&2; say "prometheus exited (log: $HOME_DIR/prometheus.log)"; exit 1; }
    sleep 0.5
  done
  say "prometheus did not get ready within 60 s (log: $HOME_DIR/prometheus.log)"; exit 1
}

down() {
  alive || { rm -f "$PID_FILE"; say "prometheus not running"; return; }
  stop_pid_file "$PID_FILE" prometheus
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) if alive; then say "prometheus running (pid $(cat "$PID_FILE")) on 127.0.0.1:$PORT"; else say "prometheus not running"; fi ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
