"""A dataflow whose settings the secured servers refuse stops with one line naming the setting, instead of
waiting forever or failing inside a worker: plaintext against TLS listeners, wrong passwords, a CA that did
not sign the server's certificate."""

import subprocess
import sys

import pytest

from tests.cluster.conftest import CLUSTER_ENV, cluster_process_env

PREFIX = "marketstream: configuration error: "


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory) -> str:
    """A CA that signed none of the stack's certificates."""
    directory = tmp_path_factory.mktemp("other-ca")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj", "/CN=some other CA",
                    "-keyout", str(directory / "ca.key"), "-out", str(directory / "ca.crt")], check=True, capture_output=True)
    return str(directory / "ca.crt")


def last_line(module: str, cwd, **changes) -> str:
    result = subprocess.run([sys.executable, "-m", "bytewax.run", module], cwd=cwd, env=cluster_process_env(**changes),
                            capture_output=True, text=True, timeout=90)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return result.stderr.strip().splitlines()[-1]


BROKERS = CLUSTER_ENV["KAFKA_BOOTSTRAP_SERVERS"]
PG = f"PostgreSQL at 127.0.0.1:{CLUSTER_ENV['POSTGRES_PORT']}"
PLAIN_S3 = CLUSTER_ENV["S3_ENDPOINT_URL"].replace("https://", "http://")


@pytest.mark.parametrize(("changes", "expected"), [
    ({"KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"},
     f"Kafka at {BROKERS} answers with TLS, which KAFKA_SECURITY_PROTOCOL=PLAINTEXT does not speak: set SSL or SASL_SSL"),
    ({"KAFKA_SASL_PASSWORD": "not-the-password"},
     "Kafka refused the credentials (KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD)"),
    ({"KAFKA_SSL_CA_LOCATION": "OTHER_CA"}, f"Kafka at {BROKERS}: TLS refused, check KAFKA_SSL_CA_LOCATION"),
    ({"S3_CA_BUNDLE": "OTHER_CA"},
     f"the object store at {CLUSTER_ENV['S3_ENDPOINT_URL']} presented a certificate that S3_CA_BUNDLE"),
    ({"S3_CA_BUNDLE": ""}, f"the object store at {CLUSTER_ENV['S3_ENDPOINT_URL']} presented a certificate that S3_CA_BUNDLE "
                           "(unset: the system CAs) does not trust"),
    ({"S3_ENDPOINT_URL": PLAIN_S3}, f"the object store at {PLAIN_S3} answers with TLS: check the scheme of S3_ENDPOINT_URL (https://)"),
], ids=["kafka-plaintext", "kafka-wrong-password", "kafka-wrong-ca", "s3-wrong-ca", "s3-no-ca", "s3-plain-http"])
def test_the_consumer_refuses_what_the_secured_servers_refuse_with_one_line(tmp_path, other_ca, changes, expected):
    changes = {name: other_ca if value == "OTHER_CA" else value for name, value in changes.items()}
    assert last_line("dataflows.stock_consume", tmp_path, **changes).startswith(PREFIX + expected)


@pytest.mark.parametrize(("changes", "expected"), [
    ({"POSTGRES_PASSWORD": "not-the-password", "POSTGRES_SSLMODE": "require"},
     "PostgreSQL refused user 'marketstream': check POSTGRES_USER / POSTGRES_PASSWORD"),
    ({"POSTGRES_SSLMODE": "disable"}, f"{PG} accepts only TLS connections (POSTGRES_SSLMODE=disable)"),
    ({"POSTGRES_SSLROOTCERT": "OTHER_CA"}, f"{PG}: TLS refused, check POSTGRES_SSLROOTCERT"),
], ids=["postgres-wrong-password", "postgres-plaintext", "postgres-wrong-ca"])
def test_the_producer_refuses_what_postgresql_refuses_with_one_line(tmp_path, other_ca, changes, expected):
    changes = {name: other_ca if value == "OTHER_CA" else value for name, value in changes.items()}
    assert last_line("dataflows.stock_produce", tmp_path, STOCK_SOURCE="synthetic", **changes).startswith(PREFIX + expected)
