#!/usr/bin/env bash
# The local marketstream stack without Docker: Apache Kafka (KRaft, single node), MinIO and PostgreSQL,
# installed natively on first use, started on loopback only, stopped by the pids this script recorded.
#
#   stack/stack.sh up       install what is missing (cached), start what is not running, wait until each answers
#   stack/stack.sh down     stop what `up` started
#   stack/stack.sh status   say what runs
#   stack/stack.sh start NAME   (cluster profile) start one server if it is not running, wait for it alone
#
# STACK_PROFILE (environment or .env) picks the shape: `single` (the default: one Kafka broker, one MinIO, plaintext,
# PostgreSQL with password rules) or `cluster` (three Kafka KRaft nodes with SASL_SSL and replication factor 3, four
# MinIO nodes in one erasure set over TLS, PostgreSQL with TLS only; stack/cluster.sh). The cluster profile keeps its
# data under .stack-cluster/ and takes ports 19192-19197 (Kafka), 19300-19303 (MinIO), 19432 (PostgreSQL) unless
# told otherwise, so it can run beside the single-node stack.
#
# Installs are cached under $MARKETSTREAM_CACHE (default ~/.cache/marketstream); data, logs and pids live
# under $STACK_DIR (default .stack/ in the repository).
#
# Ports and credentials come from the environment, else from the repository's .env ($ENV_FILE), else the
# defaults below, exactly as the dataflows read them: change S3_SECRET_KEY or POSTGRES_PASSWORD in .env and
# the next `up` gives the servers the new ones (MinIO is restarted, the PostgreSQL role altered).
# No secret is ever put on a command line: MinIO reads its credentials from its environment, psql its SQL
# from standard input.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ENV_FILE=${ENV_FILE:-$REPO/.env}

from_env_file() { # from_env_file NAME: NAME's value in $ENV_FILE (the last one; quotes and a trailing comment removed)
  [ -f "$ENV_FILE" ] || return 0
  sed -n "s/^[[:space:]]*\(export[[:space:]]\+\)\?$1=//p" "$ENV_FILE" | tail -n 1 |
    sed -E 's/[[:space:]]+#.*$//; s/[[:space:]]+$//; s/^"(.*)"$/\1/; s/^'"'"'(.*)'"'"'$/\1/'
}

setting() { # setting NAME DEFAULT: the environment's value, else .env's, else DEFAULT
  local value=${!1:-}
  [ -n "$value" ] || value=$(from_env_file "$1")
  printf '%s' "${value:-$2}"
}
CACHE=${MARKETSTREAM_CACHE:-$HOME/.cache/marketstream}

STACK_PROFILE=$(setting STACK_PROFILE single)
case $STACK_PROFILE in
  single) STACK_DIR=${STACK_DIR:-$REPO/.stack} ;;
  cluster) STACK_DIR=${STACK_DIR:-$REPO/.stack-cluster} ;;
  *) printf '[stack] error: STACK_PROFILE=%s: single or cluster\n' "$STACK_PROFILE" >&2; exit 2 ;;
esac
profile_default() { # profile_default SINGLE CLUSTER: the default of the profile in use
  if [ "$STACK_PROFILE" = cluster ]; then echo "$2"; else echo "$1"; fi
}

KAFKA_VERSION=4.1.1
# MinIO publishes no semver tags; this is the pseudo-version of the newest commit that `go install` builds here.
MINIO_VERSION=${MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}

KAFKA_PORT=$(setting KAFKA_PORT "$(profile_default 9092 19192)")  # cluster: the first of three brokers
KAFKA_CONTROLLER_PORT=$(setting KAFKA_CONTROLLER_PORT "$(profile_default 9093 19195)")  # cluster: the first of three
MINIO_PORT=$(setting MINIO_PORT "$(profile_default 9000 19300)")  # cluster: the first of four nodes
MINIO_CONSOLE_PORT=$(setting MINIO_CONSOLE_PORT "$(profile_default 9001 19310)")
POSTGRES_PORT=$(setting POSTGRES_PORT "$(profile_default 5432 19432)")
# the local stack's defaults, the same as .env.example's: fine on 127.0.0.1, never beyond it
S3_ACCESS_KEY=$(setting S3_ACCESS_KEY local-s3-admin-2f9c)
S3_SECRET_KEY=$(setting S3_SECRET_KEY local-s3-secret-71d4c0b9e2)
POSTGRES_USER=$(setting POSTGRES_USER marketstream)
POSTGRES_PASSWORD=$(setting POSTGRES_PASSWORD local-pg-5e81a3f07c)
POSTGRES_DB=$(setting POSTGRES_DB marketstream)

KAFKA_LIBS=$CACHE/kafka-$KAFKA_VERSION/libs
MINIO_BIN=$CACHE/minio-$MINIO_VERSION/minio
LOGS=$STACK_DIR/logs
PIDS=$STACK_DIR/pids

say() { printf '[stack] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

# shellcheck source=stack/pidfile.sh
. "$REPO/stack/pidfile.sh"
alive() { pid_file_alive "$PIDS/$1.pid"; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_until() { # wait_until NAME SECONDS COMMAND...
  local name=$1 limit=$2 waited=0; shift 2
  until "$@"; do
    if [ "$waited" -ge "$limit" ]; then
      say "$name did not answer within ${limit}s; last lines of its log:"
      tail -n 30 "$LOGS/$name.log" >&2 || true
      return 1
    fi
    sleep 1; waited=$((waited + 1))
  done
}

# ---------------------------------------------------------------- installs (cached)
apt_install() {
  say "installing Debian packages: $*"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

install_kafka() {
  [ -f "$KAFKA_LIBS/kafka_2.13-$KAFKA_VERSION.jar" ] && return
  command -v java >/dev/null || apt_install openjdk-17-jre-headless
  command -v mvn >/dev/null || apt_install maven
  say "fetching Apache Kafka $KAFKA_VERSION jars from Maven Central (first run only)"
  mkdir -p "$KAFKA_LIBS.tmp"
  mvn -q -B -f "$REPO/stack/kafka-pom.xml" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIBS.tmp" -Dkafka.version="$KAFKA_VERSION"
  rm -rf "$KAFKA_LIBS" && mv "$KAFKA_LIBS.tmp" "$KAFKA_LIBS"
}

install_minio() {
  [ -x "$MINIO_BIN" ] && return
  command -v go >/dev/null || die "MinIO is built from its Go module and needs the go command"
  say "building MinIO $MINIO_VERSION with go install (first run only, a few minutes)"
  mkdir -p "$(dirname "$MINIO_BIN")"
  GOBIN=$(dirname "$MINIO_BIN") GOFLAGS=-mod=mod go install "github.com/minio/minio@$MINIO_VERSION"
}

pg_bin() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$dir" ] && [ -x "$dir/initdb" ] && echo "$dir"
}

install_postgres() {
  pg_bin >/dev/null && return
  apt_install postgresql
  pg_bin >/dev/null || die "PostgreSQL server binaries not found after installing the postgresql package"
}

# ---------------------------------------------------------------- Kafka
start_kafka() {
  if alive kafka; then say "kafka already running (pid $(cat "$PIDS/kafka.pid"))"; return; fi
  port_open "$KAFKA_PORT" && die "port $KAFKA_PORT is taken by a process this stack did not start"
  local dir=$STACK_DIR/kafka
  mkdir -p "$dir"
  cat >"$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
num.partitions=6
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
EOF
  local java_opts=(-Xms256m -Xmx1g -Dlog4j2.configurationFile="$REPO/stack/log4j2.properties" -cp "$KAFKA_LIBS/*")
  if [ ! -f "$dir/data/meta.properties" ]; then
    local cluster_id
    cluster_id=$(java "${java_opts[@]}" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)
    java "${java_opts[@]}" kafka.tools.StorageTool format -t "$cluster_id" -c "$dir/server.properties" \
      >"$LOGS/kafka-format.log" 2>&1 || { cat "$LOGS/kafka-format.log" >&2; die "formatting Kafka storage failed"; }
  fi
  say "starting kafka on 127.0.0.1:$KAFKA_PORT"
  nohup java "${java_opts[@]}" kafka.Kafka "$dir/server.properties" >"$LOGS/kafka.log" 2>&1 &
  echo $! >"$PIDS/kafka.pid"
}

kafka_ready() { port_open "$KAFKA_PORT" && grep -q "Kafka Server started" "$LOGS/kafka.log"; }

# ---------------------------------------------------------------- MinIO
minio_credentials() { printf '%s\n%s' "$S3_ACCESS_KEY" "$S3_SECRET_KEY" | sha256sum | cut -d' ' -f1; }

start_minio() {
  if alive minio; then
    if [ "$(cat "$STACK_DIR/minio.credentials" 2>/dev/null)" = "$(minio_credentials)" ]; then
      say "minio already running (pid $(cat "$PIDS/minio.pid"))"; return
    fi
    say "S3_ACCESS_KEY / S3_SECRET_KEY changed: restarting minio with them"
    stop_pid minio
  fi
  port_open "$MINIO_PORT" && die "port $MINIO_PORT is taken by a process this stack did not start"
  mkdir -p "$STACK_DIR/minio"
  say "starting minio on 127.0.0.1:$MINIO_PORT"
  MINIO_ROOT_USER=$S3_ACCESS_KEY MINIO_ROOT_PASSWORD=$S3_SECRET_KEY MINIO_BROWSER=off \
    nohup "$MINIO_BIN" server "$STACK_DIR/minio" --address "127.0.0.1:$MINIO_PORT" \
    --console-address "127.0.0.1:$MINIO_CONSOLE_PORT" >"$LOGS/minio.log" 2>&1 &
  echo $! >"$PIDS/minio.pid"
  minio_credentials >"$STACK_DIR/minio.credentials"
}

minio_ready() { curl -fsS "http://127.0.0.1:$MINIO_PORT/minio/health/ready" >/dev/null 2>&1; }

# ---------------------------------------------------------------- PostgreSQL
as_pg() { # run a command as the PostgreSQL owner: postgres refuses to run as root
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

sql_literal() { printf "'%s'" "${1//\'/\'\'}"; }
sql_identifier() { printf '"%s"' "${1//\"/\"\"}"; }

start_postgres() {
  local bin data=$STACK_DIR/postgres
  bin=$(pg_bin)
  local psql=("$bin/psql" -h "$data" -p "$POSTGRES_PORT" -v ON_ERROR_STOP=1 -q -X)
  if [ -f "$data/postmaster.pid" ] && kill -0 "$(head -n 1 "$data/postmaster.pid")" 2>/dev/null; then
    say "postgres already running (pid $(head -n 1 "$data/postmaster.pid"))"
  else
    port_open "$POSTGRES_PORT" && die "port $POSTGRES_PORT is taken by a process this stack did not start"
    if [ ! -f "$data/PG_VERSION" ]; then
      mkdir -p "$data"
      [ "$(id -u)" = 0 ] && chown postgres: "$data"
      chmod 700 "$data"
      as_pg "$bin/initdb" -D "$data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
        >"$LOGS/postgres-initdb.log" 2>&1 || { cat "$LOGS/postgres-initdb.log" >&2; die "initdb failed"; }
    fi
    local POSTGRES_SERVER_OPTIONS=""
    if declare -F prepare_postgres_data >/dev/null; then prepare_postgres_data "$data"; fi  # the cluster profile's TLS
    say "starting postgres on 127.0.0.1:$POSTGRES_PORT"
    as_pg "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 \
      -o "-p $POSTGRES_PORT -c listen_addresses=127.0.0.1 -k $data${POSTGRES_SERVER_OPTIONS:+ $POSTGRES_SERVER_OPTIONS}" start >/dev/null
    head -n 1 "$data/postmaster.pid" >"$PIDS/postgres.pid"
  fi
  # the role gets the configured password on every `up` (through the local socket, SQL on stdin), so
  # a POSTGRES_PASSWORD changed in .env takes effect; role and database are created when missing
  local user password
  user=$(sql_identifier "$POSTGRES_USER"); password=$(sql_literal "$POSTGRES_PASSWORD")
  as_pg "${psql[@]}" -U postgres -d postgres <<SQL
SELECT format('CREATE ROLE %I LOGIN', $(sql_literal "$POSTGRES_USER"))
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = $(sql_literal "$POSTGRES_USER")) \gexec
ALTER ROLE $user LOGIN PASSWORD $password;
SELECT format('CREATE DATABASE %I OWNER %I', $(sql_literal "$POSTGRES_DB"), $(sql_literal "$POSTGRES_USER"))
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = $(sql_literal "$POSTGRES_DB")) \gexec
SQL
  if [ "$(as_pg "${psql[@]}" -U "$POSTGRES_USER" -d "$POSTGRES_DB" -tA <<<"SELECT to_regclass('companies_info') IS NULL")" = t ]; then
    as_pg "${psql[@]}" -U "$POSTGRES_USER" -d "$POSTGRES_DB" -f - <"$REPO/stack/init.sql"
    say "postgres: companies_info created and seeded"
  fi
}

postgres_ready() { "$(pg_bin)/pg_isready" -q -h 127.0.0.1 -p "$POSTGRES_PORT"; }

# ---------------------------------------------------------------- commands
up() {
  mkdir -p "$LOGS" "$PIDS"
  install_kafka
  install_minio
  install_postgres
  start_kafka
  start_minio
  start_postgres
  wait_until minio 60 minio_ready
  wait_until postgres 60 postgres_ready
  wait_until kafka 120 kafka_ready
  say "ready: kafka 127.0.0.1:$KAFKA_PORT, minio http://127.0.0.1:$MINIO_PORT, postgres 127.0.0.1:$POSTGRES_PORT"
}

stop_pid() { # stop_pid NAME: TERM, then KILL after 30 s
  stop_pid_file "$PIDS/$1.pid" "$1"
}

stop_postgres() {
  local data=$STACK_DIR/postgres
  if [ -f "$data/postmaster.pid" ] && alive postgres; then
    say "stopping postgres (pid $(cat "$PIDS/postgres.pid"))"
    as_pg "$(pg_bin)/pg_ctl" -D "$data" -m fast -w stop >/dev/null || stop_pid postgres
    rm -f "$PIDS/postgres.pid"
  fi
}

down() {
  stop_postgres
  stop_pid minio
  stop_pid kafka
}

status() {
  local name
  for name in $(if [ "$STACK_PROFILE" = cluster ]; then cluster_names; else echo kafka minio postgres; fi); do
    if alive "$name"; then echo "$name: running (pid $(cat "$PIDS/$name.pid"))"; else echo "$name: stopped"; fi
  done
}

if [ "$STACK_PROFILE" = cluster ]; then
  # shellcheck source=stack/cluster.sh
  . "$REPO/stack/cluster.sh"
  up() { cluster_up; }
  down() { cluster_down; }
  start() { cluster_start "$@"; }
else
  start() { die "start NAME is for the cluster profile (STACK_PROFILE=cluster); the single stack starts with up"; }
fi

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  start) start "${2:-}" ;;
  minio-path) echo "$MINIO_BIN" ;;  # for tests that run a second, short-lived MinIO
  kafka-classpath) echo "$KAFKA_LIBS/*" ;;  # for tests that run a second, short-lived broker
  *) echo "usage: $0 up|down|status|start NAME|minio-path|kafka-classpath" >&2; exit 2 ;;
esac
