"""Sources: one module per upstream API, plus the Kafka topic source of the consumers."""
