#!/usr/bin/env bash
# Toxiproxy (github.com/Shopify/toxiproxy), the TCP fault proxy the fault tests put between a dataflow and
# its servers: latency, bandwidth limits, connection resets and timeouts, added and removed while data flows.
#
#   stack/toxiproxy.sh install   build toxiproxy-server from its Go module (cached), print nothing else
#   stack/toxiproxy.sh up        install if missing, start it on 127.0.0.1:$TOXIPROXY_PORT, wait until it answers
#   stack/toxiproxy.sh down      stop what `up` started, by its pid
#   stack/toxiproxy.sh status    say whether it runs
#   stack/toxiproxy.sh path      the server binary (for tests that start one of their own)
#
# The binary is built once with `go install` and cached under $MARKETSTREAM_CACHE (default
# ~/.cache/marketstream), as stack/stack.sh caches MinIO; nothing built is ever committed. Its log and pid
# live under $STACK_DIR (default .stack/ in the repository). The server holds no proxies when it starts:
# whoever uses it creates them through its HTTP API (tests/integration/toxiproxy.py).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STACK_DIR=${STACK_DIR:-$REPO/.stack}
CACHE=${MARKETSTREAM_CACHE:-$HOME/.cache/marketstream}
# the newest version the Go module proxy serves for this module path (`go list -m -versions`)
TOXIPROXY_VERSION=${TOXIPROXY_VERSION:-v2.5.0}
TOXIPROXY_PORT=${TOXIPROXY_PORT:-8474}
BIN=$CACHE/toxiproxy-$TOXIPROXY_VERSION/toxiproxy-server
LOG=$STACK_DIR/logs/toxiproxy.log
PID=$STACK_DIR/pids/toxiproxy.pid

say() { printf '[toxiproxy] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }
alive() { [ -f "$PID" ] && kill -0 "$(cat "$PID")" 2>/dev/null; }
answers() { curl -fsS "http://127.0.0.1:$TOXIPROXY_PORT/version" >/dev/null 2>&1; }

install() {
  [ -x "$BIN" ] && return
  command -v go >/dev/null || die "Toxiproxy is built from its Go module and needs the go command (apt-get install golang-go)"
  say "building toxiproxy-server $TOXIPROXY_VERSION with go install (first run only, about a minute)"
  local gobin
  gobin=$(mktemp -d)
  GOBIN=$gobin GOFLAGS=-mod=mod go install "github.com/Shopify/toxiproxy/v2/cmd/server@$TOXIPROXY_VERSION"
  mkdir -p "$(dirname "$BIN")"
  mv "$gobin/server" "$BIN"
  rm -rf "$gobin"
}

up() {
  install
  if alive; then say "already running (pid $(cat "$PID"))"; return; fi
  answers && die "port $TOXIPROXY_PORT answers already, from a Toxiproxy this script did not start"
  mkdir -p "$(dirname "$LOG")" "$(dirname "$PID")"
  "$BIN" -host 127.0.0.1 -port "$TOXIPROXY_PORT" >>"$LOG" 2>&1 &
  echo $! >"$PID"
  local waited=0
  until answers; do
    if [ "$waited" -ge 30 ] || ! alive; then
      tail -n 20 "$LOG" >&2 || true
      die "toxiproxy did not answer on 127.0.0.1:$TOXIPROXY_PORT within 30 s"
    fi
    sleep 1; waited=$((waited + 1))
  done
  say "running on 127.0.0.1:$TOXIPROXY_PORT (pid $(cat "$PID"))"
}

down() {
  alive || { rm -f "$PID"; return; }
  local pid
  pid=$(cat "$PID")
  say "stopping (pid $pid)"
  kill "$pid"
  for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$PID"
}

case "${1:-}" in
  install) install ;;
  up) up ;;
  down) down ;;
  status) if alive; then echo "toxiproxy: running (pid $(cat "$PID"))"; else echo "toxiproxy: stopped"; fi ;;
  path) install; echo "$BIN" ;;
  *) echo "usage: $0 install|up|down|status|path" >&2; exit 2 ;;
esac
