# The cluster profile of stack/stack.sh (STACK_PROFILE=cluster): the same servers, shaped as in production and
# secured, still native and on loopback. Sourced by stack.sh, which has set ports, credentials and helpers.
#
#   Kafka       three KRaft nodes, each broker and controller (a quorum of 3 voters: one node may be lost),
#               client and inter-broker listener SASL_SSL with SCRAM-SHA-512 users, controller listener SSL
#               with client certificates; replication factor 3, min.insync.replicas=2, no unclean election.
#   MinIO       four server processes, one drive each, forming one erasure set (EC:2) over TLS: one node
#               may be lost without losing reads or writes.
#   PostgreSQL  ssl=on, and only `hostssl` rules: a connection without TLS is refused.
#
# Certificates: a CA and one server certificate per service (SAN 127.0.0.1 and localhost) are made with
# openssl at the first `up` and kept under $STACK_DIR/tls; clients trust $STACK_DIR/tls/ca.crt
# (KAFKA_SSL_CA_LOCATION, S3_CA_BUNDLE, POSTGRES_SSLROOTCERT). As in the single-node profile, no secret is
# put on a command line: the JVM reads Kafka's tool arguments from an argument file (`java @file`, mode 600).

KAFKA_NODES=3
MINIO_NODES=4
TLS=$STACK_DIR/tls
KAFKA_SASL_USERNAME=$(setting KAFKA_SASL_USERNAME marketstream)
KAFKA_SASL_PASSWORD=$(setting KAFKA_SASL_PASSWORD local-kafka-c7e1a94b20)
KAFKA_BROKER_USERNAME=$(setting KAFKA_BROKER_USERNAME broker)
KAFKA_BROKER_PASSWORD=$(setting KAFKA_BROKER_PASSWORD local-broker-38d0f6a1e5)
# each node's second client listener, for clients that reach Kafka through a fault proxy (`make chaos`):
# it listens on KAFKA_PROXIED_PORT (+1, +2) and is advertised at KAFKA_PROXY_PORT (+1, +2), the proxy's ports
KAFKA_PROXIED_PORT=$(setting KAFKA_PROXIED_PORT 19200)
KAFKA_PROXY_PORT=$(setting KAFKA_PROXY_PORT 19520)

broker_port() { echo $((KAFKA_PORT + $1 - 1)); }
controller_port() { echo $((KAFKA_CONTROLLER_PORT + $1 - 1)); }
minio_port() { echo $((MINIO_PORT + $1 - 1)); }

for secret in "$KAFKA_SASL_USERNAME" "$KAFKA_SASL_PASSWORD" "$KAFKA_BROKER_USERNAME" "$KAFKA_BROKER_PASSWORD"; do
  case $secret in *[\'\"\\,=\[\]\ ]*) die "Kafka SCRAM user names and passwords may not hold quotes, backslashes, commas, '=', brackets or spaces" ;; esac
done

# ---------------------------------------------------------------- certificates
make_certificates() {
  sh "$REPO/stack/certs.sh" "$TLS" kafka minio postgres >"$LOGS/certs.log" 2>&1 || { cat "$LOGS/certs.log" >&2; die "making certificates failed"; }
  sed 's/^/[stack] /' "$LOGS/certs.log" >&2
  cat "$TLS/kafka.key" "$TLS/kafka.crt" >"$TLS/kafka.pem"  # Kafka's PEM keystore: key, then certificate
  chmod 600 "$TLS/kafka.pem"
}

# ---------------------------------------------------------------- Kafka
java_opts() { echo "-Xms256m -Xmx768m -Dlog4j2.configurationFile=$REPO/stack/log4j2.properties"; }

kafka_tool() { # kafka_tool LOG ARGS...: run a Kafka tool with its arguments in a private argument file
  local log=$1 argfile; shift
  argfile=$(mktemp "$STACK_DIR/kafka-args.XXXXXX")
  chmod 600 "$argfile"
  printf "'%s' " "$@" >"$argfile"
  # shellcheck disable=SC2046
  java $(java_opts) -cp "$KAFKA_LIBS/*" "@$argfile" >"$log" 2>&1
  local status=$?
  rm -f "$argfile"
  return $status
}

kafka_credentials() { printf '%s\n' "$KAFKA_SASL_USERNAME" "$KAFKA_SASL_PASSWORD" "$KAFKA_BROKER_USERNAME" "$KAFKA_BROKER_PASSWORD" | sha256sum | cut -d' ' -f1; }

write_kafka_properties() { # write_kafka_properties NODE
  local dir=$STACK_DIR/kafka-$1
  mkdir -p "$dir"
  : >"$dir/server.properties"
  chmod 600 "$dir/server.properties"  # holds the brokers' own SCRAM password
  KAFKA_PORT=$KAFKA_PORT KAFKA_CONTROLLER_PORT=$KAFKA_CONTROLLER_PORT KAFKA_BROKER_USERNAME=$KAFKA_BROKER_USERNAME \
    KAFKA_BROKER_PASSWORD=$KAFKA_BROKER_PASSWORD KAFKA_PROXIED_PORT=$KAFKA_PROXIED_PORT \
    KAFKA_PROXY_PORT=$KAFKA_PROXY_PORT "$REPO/stack/kafka-node-properties.sh" "$1" "$dir/data" "$TLS" \
    >"$dir/server.properties"
}

start_kafka_node() { # start_kafka_node NODE
  local node=$1 name=kafka-$1 dir=$STACK_DIR/kafka-$1
  if alive "$name"; then say "$name already running (pid $(cat "$PIDS/$name.pid"))"; return; fi
  port_open "$(broker_port "$node")" && die "port $(broker_port "$node") is taken by a process this stack did not start"
  port_open "$(controller_port "$node")" && die "port $(controller_port "$node") is taken by a process this stack did not start"
  port_open $((KAFKA_PROXIED_PORT + node - 1)) && die "port $((KAFKA_PROXIED_PORT + node - 1)) (KAFKA_PROXIED_PORT) is taken by a process this stack did not start"
  write_kafka_properties "$node"
  if [ ! -f "$dir/data/meta.properties" ]; then
    [ -f "$STACK_DIR/kafka.cluster-id" ] ||
      java $(java_opts) -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1 >"$STACK_DIR/kafka.cluster-id"
    # the SCRAM users exist from the first record of the metadata log: brokers authenticate to each other with them
    kafka_tool "$LOGS/$name-format.log" kafka.tools.StorageTool format -t "$(cat "$STACK_DIR/kafka.cluster-id")" \
      -c "$dir/server.properties" \
      --add-scram "SCRAM-SHA-512=[name=$KAFKA_BROKER_USERNAME,password=$KAFKA_BROKER_PASSWORD]" \
      --add-scram "SCRAM-SHA-512=[name=$KAFKA_SASL_USERNAME,password=$KAFKA_SASL_PASSWORD]" ||
      { cat "$LOGS/$name-format.log" >&2; die "formatting $name's storage failed"; }
    kafka_credentials >"$STACK_DIR/kafka.credentials"
  fi
  say "starting $name on 127.0.0.1:$(broker_port "$node") (SASL_SSL), controller 127.0.0.1:$(controller_port "$node")"
  # shellcheck disable=SC2046
  nohup java $(java_opts) -cp "$KAFKA_LIBS/*" kafka.Kafka "$dir/server.properties" >"$LOGS/$name.log" 2>&1 &
  echo $! >"$PIDS/$name.pid"
}

kafka_node_ready() { port_open "$(broker_port "$1")" && grep -q "Kafka Server started" "$LOGS/kafka-$1.log"; }

write_admin_properties() { # what Kafka's tools need to log in as the broker user
  : >"$STACK_DIR/kafka-admin.properties"
  chmod 600 "$STACK_DIR/kafka-admin.properties"
  cat >"$STACK_DIR/kafka-admin.properties" <<EOF
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$KAFKA_BROKER_USERNAME" password="$KAFKA_BROKER_PASSWORD";
ssl.truststore.type=PEM
ssl.truststore.location=$TLS/ca.crt
EOF
}

update_kafka_users() { # a KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD changed in .env takes effect at the next `up`
  [ "$(cat "$STACK_DIR/kafka.credentials" 2>/dev/null)" = "$(kafka_credentials)" ] && return
  say "Kafka credentials changed: setting the SCRAM-SHA-512 user $KAFKA_SASL_USERNAME"
  write_admin_properties
  local bootstrap="127.0.0.1:$(broker_port 1),127.0.0.1:$(broker_port 2),127.0.0.1:$(broker_port 3)"
  kafka_tool "$LOGS/kafka-users.log" kafka.admin.ConfigCommand --bootstrap-server "$bootstrap" \
    --command-config "$STACK_DIR/kafka-admin.properties" --alter --entity-type users \
    --entity-name "$KAFKA_SASL_USERNAME" --add-config "SCRAM-SHA-512=[password=$KAFKA_SASL_PASSWORD]" ||
    { cat "$LOGS/kafka-users.log" >&2; die "setting Kafka user $KAFKA_SASL_USERNAME failed (a changed KAFKA_BROKER_PASSWORD needs a fresh STACK_DIR)"; }
  kafka_credentials >"$STACK_DIR/kafka.credentials"
}

# ---------------------------------------------------------------- MinIO
minio_endpoints() {
  local node endpoints=""
  for node in $(seq 1 $MINIO_NODES); do endpoints+=" https://127.0.0.1:$(minio_port "$node")$STACK_DIR/minio-$node"; done
  echo "$endpoints"
}

start_minio_node() { # start_minio_node NODE
  local node=$1 name=minio-$1
  if alive "$name"; then say "$name already running (pid $(cat "$PIDS/$name.pid"))"; return; fi
  port_open "$(minio_port "$node")" && die "port $(minio_port "$node") is taken by a process this stack did not start"
  mkdir -p "$STACK_DIR/minio-$node" "$STACK_DIR/minio-certs/CAs"
  cp "$TLS/minio.crt" "$STACK_DIR/minio-certs/public.crt"
  cp "$TLS/minio.key" "$STACK_DIR/minio-certs/private.key"
  cp "$TLS/ca.crt" "$STACK_DIR/minio-certs/CAs/ca.crt"  # the nodes verify each other with it
  say "starting $name on https://127.0.0.1:$(minio_port "$node")"
  # Inside a container (/.dockerenv, as on some CI machines) MinIO waits for every endpoint's host to resolve
  # to something else than loopback before it will tell its own endpoint from the others; _MINIO_SERVER_LOCAL
  # names its own (host:port), so four nodes on one address and four ports work there as they do natively.
  # shellcheck disable=SC2046
  MINIO_ROOT_USER=$S3_ACCESS_KEY MINIO_ROOT_PASSWORD=$S3_SECRET_KEY MINIO_BROWSER=off \
    MINIO_STORAGE_CLASS_STANDARD=EC:2 MINIO_CI_CD=on _MINIO_SERVER_LOCAL="127.0.0.1:$(minio_port "$node")" \
    nohup "$MINIO_BIN" server --address "127.0.0.1:$(minio_port "$node")" \
    --console-address "127.0.0.1:$((MINIO_CONSOLE_PORT + node - 1))" --certs-dir "$STACK_DIR/minio-certs" \
    $(minio_endpoints) >"$LOGS/$name.log" 2>&1 &
  echo $! >"$PIDS/$name.pid"
}

minio_node_ready() { curl -fsS --cacert "$TLS/ca.crt" "https://127.0.0.1:$(minio_port "$1")/minio/health/ready" >/dev/null 2>&1; }

minio_cluster_ready() { # every node answers and the erasure set has its write quorum
  local node
  for node in $(seq 1 $MINIO_NODES); do minio_node_ready "$node" || return 1; done
  curl -fsS --cacert "$TLS/ca.crt" "https://127.0.0.1:$MINIO_PORT/minio/health/cluster" >/dev/null 2>&1
}

start_minio_cluster() {
  local node
  if [ "$(cat "$STACK_DIR/minio.credentials" 2>/dev/null)" != "$(minio_credentials)" ]; then
    for node in $(seq 1 $MINIO_NODES); do
      alive "minio-$node" && { say "S3_ACCESS_KEY / S3_SECRET_KEY changed: restarting minio-$node with them"; stop_pid "minio-$node"; }
    done
  fi
  for node in $(seq 1 $MINIO_NODES); do start_minio_node "$node"; done
  minio_credentials >"$STACK_DIR/minio.credentials"
}

# ---------------------------------------------------------------- PostgreSQL
prepare_postgres_data() { # called by start_postgres before the server starts: TLS on, TLS-only rules
  local data=$1
  cp "$TLS/postgres.crt" "$data/server.crt"
  cp "$TLS/postgres.key" "$data/server.key"
  chmod 600 "$data/server.key"
  [ "$(id -u)" = 0 ] && chown postgres: "$data/server.crt" "$data/server.key"
  cp "$REPO/stack/pg_hba.cluster.conf" "$data/pg_hba.conf"  # TLS only over TCP
  POSTGRES_SERVER_OPTIONS="-c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key"
}

# ---------------------------------------------------------------- commands
cluster_up() {
  mkdir -p "$LOGS" "$PIDS"
  command -v openssl >/dev/null || apt_install openssl
  install_kafka
  install_minio
  install_postgres
  make_certificates
  local node
  for node in $(seq 1 $KAFKA_NODES); do start_kafka_node "$node"; done
  start_minio_cluster
  start_postgres
  wait_until postgres 60 postgres_ready
  wait_until minio-1 90 minio_cluster_ready
  for node in $(seq 1 $KAFKA_NODES); do wait_until "kafka-$node" 120 kafka_node_ready "$node"; done
  update_kafka_users
  say "ready (cluster): kafka SASL_SSL 127.0.0.1:$(broker_port 1)-$(broker_port $KAFKA_NODES)," \
    "minio https://127.0.0.1:$(minio_port 1)-$(minio_port $MINIO_NODES), postgres (TLS) 127.0.0.1:$POSTGRES_PORT," \
    "CA $TLS/ca.crt"
}

cluster_start() { # cluster_start NAME: start one server (installed and set up by an earlier `up`) if it is not
  # running, and wait for it alone: the chaos soak restarts the server it killed without waiting for the others
  mkdir -p "$LOGS" "$PIDS"
  case "${1:-}" in
    kafka-[1-9]) [ "${1#kafka-}" -le "$KAFKA_NODES" ] || die "start: no server named $1 (one of: $(cluster_names))"
      start_kafka_node "${1#kafka-}"; wait_until "$1" 120 kafka_node_ready "${1#kafka-}" ;;
    minio-[1-9]) [ "${1#minio-}" -le "$MINIO_NODES" ] || die "start: no server named $1 (one of: $(cluster_names))"
      start_minio_node "${1#minio-}"; wait_until "$1" 90 minio_node_ready "${1#minio-}" ;;
    postgres) start_postgres; wait_until postgres 60 postgres_ready ;;
    *) die "start: no server named ${1:-(none)} (one of: $(cluster_names))" ;;
  esac
}

cluster_down() {
  stop_postgres
  local node
  for node in $(seq 1 $MINIO_NODES); do stop_pid "minio-$node"; done
  for node in $(seq 1 $KAFKA_NODES); do stop_pid "kafka-$node"; done
}

cluster_names() { echo kafka-1 kafka-2 kafka-3 minio-1 minio-2 minio-3 minio-4 postgres; }
