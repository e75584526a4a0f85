#!/usr/bin/env bash
# Entry point of a Kafka node of docker-compose.yml's cluster profile (image apache/kafka): the same
# server.properties as stack/cluster.sh writes, storage formatted once with the SCRAM users, then the node.
set -euo pipefail
cat /tls/kafka.key /tls/kafka.crt >/tmp/kafka.pem  # Kafka's PEM keystore: key, then certificate
/stack/kafka-node-properties.sh "$KAFKA_NODE" /var/lib/kafka/data /tmp >/tmp/server.properties
cp /tls/ca.crt /tmp/ca.crt
if [ ! -f /var/lib/kafka/data/meta.properties ]; then
  /opt/kafka/bin/kafka-storage.sh format -t "$KAFKA_CLUSTER_ID" -c /tmp/server.properties \
    --add-scram "SCRAM-SHA-512=[name=$KAFKA_BROKER_USERNAME,password=$KAFKA_BROKER_PASSWORD]" \
    --add-scram "SCRAM-SHA-512=[name=$KAFKA_SASL_USERNAME,password=$KAFKA_SASL_PASSWORD]"
fi
exec /opt/kafka/bin/kafka-server-start.sh /tmp/server.properties
