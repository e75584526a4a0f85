import os
from pathlib import Path

import pytest

from marketstream.settings import ConfigError, load_settings
from tests.conftest import make_settings

SECRET = "sk-live-9f8e7d6c5b4a39281706"


def test_missing_required_setting_names_the_variable():
    settings = load_settings(_env_file=None)
    with pytest.raises(ConfigError, match="S3_ENDPOINT_URL") as error:
        settings.require("s3_endpoint_url")
    assert "missing required setting" in str(error.value)


def test_every_missing_setting_is_named_once():
    settings = load_settings(_env_file=None, postgres_host="db")
    with pytest.raises(ConfigError) as error:
        settings.require("postgres_host", "postgres_db", "postgres_password")
    message = str(error.value)
    assert "POSTGRES_DB" in message and "POSTGRES_PASSWORD" in message and "POSTGRES_HOST" not in message


def test_empty_secret_counts_as_missing(monkeypatch):
    monkeypatch.setenv("API_KEY_ALPACA", "")
    settings = load_settings(_env_file=None)
    with pytest.raises(ConfigError, match="API_KEY_ALPACA"):
        settings.require("api_key_alpaca")


def test_malformed_value_names_the_variable_without_echoing_it(monkeypatch):
    monkeypatch.setenv("POSTGRES_PORT", "not-a-port")
    with pytest.raises(ConfigError, match="POSTGRES_PORT") as error:
        load_settings(_env_file=None)
    assert "not-a-port" not in str(error.value)


def test_env_file_is_read(tmp_path, monkeypatch):
    env = tmp_path / ".env"
    env.write_text("BATCH_MAX_ROWS=123   # inline comment\nSTOCK_SOURCE=synthetic\n")
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.batch_max_rows == 123
    assert settings.stock_source == "synthetic"


def test_secrets_never_appear_in_repr_or_str():
    settings = make_settings(
        s3_secret_key=SECRET, api_secret_alpaca=SECRET, postgres_password=SECRET,
        bluesky_password=SECRET, finnhub_api_key=SECRET, api_key_fred=SECRET, kafka_sasl_password=SECRET,
    )
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings)
    assert SECRET not in str(settings.model_dump())


def test_postgres_password_is_passed_as_a_keyword_not_a_dsn():
    kwargs = make_settings(postgres_password=SECRET).postgres_connect_kwargs()
    assert kwargs["password"] == SECRET
    assert all(SECRET not in str(value) for key, value in kwargs.items() if key != "password")


def test_log_lines_never_carry_a_configured_secret(caplog):
    import logging

    from pipelines.runtime import RedactingFormatter

    formatter = RedactingFormatter([SECRET], "%(message)s")
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "GET /news?token=%s failed", (SECRET,), None)
    assert formatter.format(record) == "GET /news?token=*** failed"


def test_a_misspelt_override_is_an_error():
    with pytest.raises(TypeError, match="unknown settings: batch_max_row"):
        load_settings(_env_file=None, batch_max_row=5)


def test_without_tls_settings_the_clients_get_what_they_always_got(monkeypatch):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    settings = make_settings()
    assert "verify" not in settings.s3_storage_options()["client_kwargs"]
    assert settings.delta_storage_options() == make_settings().delta_storage_options()
    assert "SSL_CERT_FILE" not in os.environ
    assert "tls_ca_file_path" not in settings.arrow_s3_options()
    assert not {"sslmode", "sslrootcert"} & set(settings.postgres_connect_kwargs())


def test_s3_ca_bundle_reaches_every_s3_client(tmp_path, monkeypatch):
    bundle, before = tmp_path / "ca.crt", tmp_path / "trusted.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\nOURS\n-----END CERTIFICATE-----\n")
    before.write_text("-----BEGIN CERTIFICATE-----\nPUBLIC\n-----END CERTIFICATE-----\n")
    monkeypatch.setenv("SSL_CERT_FILE", str(before))
    settings = make_settings(s3_endpoint_url="https://127.0.0.1:19300", s3_ca_bundle=str(bundle))
    assert settings.s3_storage_options()["client_kwargs"]["verify"] == str(bundle)  # s3fs / botocore: a path
    assert settings.delta_storage_options()["AWS_ALLOW_HTTP"] == "false"
    # delta-rs / object_store (rustls): what SSL_CERT_FILE names, now what was trusted before plus the store's CA
    combined = Path(os.environ["SSL_CERT_FILE"]).read_text()
    assert "PUBLIC" in combined and "OURS" in combined
    settings.delta_storage_options()
    assert Path(os.environ["SSL_CERT_FILE"]).read_text() == combined  # once, not once more per call
    arrow = settings.arrow_s3_options()  # pyarrow
    assert (arrow["tls_ca_file_path"], arrow["scheme"], arrow["endpoint_override"]) == (str(bundle), "https", "127.0.0.1:19300")


def test_an_unreadable_s3_ca_bundle_is_a_configuration_error_naming_it(tmp_path, monkeypatch):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    settings = make_settings(s3_ca_bundle=str(tmp_path / "missing.crt"))
    with pytest.raises(ConfigError, match="S3_CA_BUNDLE .*missing.crt: cannot read it"):
        settings.delta_storage_options()


def test_postgres_tls_settings_go_to_libpq():
    kwargs = make_settings(postgres_sslmode="verify-full", postgres_sslrootcert="/ca.crt").postgres_connect_kwargs()
    assert (kwargs["sslmode"], kwargs["sslrootcert"]) == ("verify-full", "/ca.crt")
    with pytest.raises(ConfigError, match="POSTGRES_SSLMODE"):
        load_settings(_env_file=None, postgres_sslmode="sometimes")
