#!/usr/bin/env bash
# kafka-node-properties.sh NODE DATA_DIR TLS_DIR: server.properties of node NODE (1-3) of the cluster profile's
# Kafka, on stdout: broker and KRaft controller in one, SASL_SSL (SCRAM-SHA-512) for clients and brokers, TLS with
# client certificates between controllers, replication factor 3 with min.insync.replicas=2 and no unclean
# election. Ports from KAFKA_PORT and KAFKA_CONTROLLER_PORT (the first node's; the others follow), the brokers'
# own user from KAFKA_BROKER_USERNAME / KAFKA_BROKER_PASSWORD. Used by stack/cluster.sh and docker-compose.yml.
#
# With KAFKA_PROXIED_PORT and KAFKA_PROXY_PORT set (the first node's; the others follow), each node has a
# second client listener, PROXIED (SASL_SSL too), on its KAFKA_PROXIED_PORT and advertised at its
# KAFKA_PROXY_PORT, where a TCP proxy (Toxiproxy, in `make chaos`) forwards to it: a client that bootstraps
# through the proxy is told the proxy's addresses, so all of its Kafka traffic passes the proxy.
set -euo pipefail
node=$1 data=$2 tls=$3
voters=""
for other in 1 2 3; do voters+="${voters:+,}$other@127.0.0.1:$((KAFKA_CONTROLLER_PORT + other - 1))"; done
broker=$((KAFKA_PORT + node - 1)) controller=$((KAFKA_CONTROLLER_PORT + node - 1))
listeners="SASL_SSL://127.0.0.1:$broker,CONTROLLER://127.0.0.1:$controller"
advertised=$listeners protocols="CONTROLLER:SSL,SASL_SSL:SASL_SSL"
scram="org.apache.kafka.common.security.scram.ScramLoginModule required username=\"$KAFKA_BROKER_USERNAME\" password=\"$KAFKA_BROKER_PASSWORD\";"
if [ -n "${KAFKA_PROXIED_PORT:-}" ] && [ -n "${KAFKA_PROXY_PORT:-}" ]; then
  listeners+=",PROXIED://127.0.0.1:$((KAFKA_PROXIED_PORT + node - 1))"
  advertised+=",PROXIED://127.0.0.1:$((KAFKA_PROXY_PORT + node - 1))"
  protocols+=",PROXIED:SASL_SSL"
  proxied_scram="listener.name.proxied.scram-sha-512.sasl.jaas.config=$scram"
fi
cat <<PROPERTIES
process.roles=broker,controller
node.id=$node
controller.quorum.voters=$voters
listeners=$listeners
advertised.listeners=$advertised
controller.listener.names=CONTROLLER
inter.broker.listener.name=SASL_SSL
listener.security.protocol.map=$protocols
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=$scram
${proxied_scram:-}
listener.name.controller.ssl.client.auth=required
ssl.keystore.type=PEM
ssl.keystore.location=$tls/kafka.pem
ssl.truststore.type=PEM
ssl.truststore.location=$tls/ca.crt
log.dirs=$data
num.partitions=6
default.replication.factor=3
min.insync.replicas=2
unclean.leader.election.enable=false
offsets.topic.replication.factor=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
PROPERTIES
