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
