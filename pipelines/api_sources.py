"""The API sources of the producers, built from the settings (see `pipelines.connectors`)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from marketstream.companies import CompanyDirectory, load_companies
from marketstream.settings import Settings
from sources.alpaca_history import AlpacaTradeHistory
from sources.alpaca_trades import AlpacaTradeStream
from sources.bluesky_posts import BlueskySearch, bluesky_source
from sources.finnhub_news import FinnhubNews, FinnhubNewsHistory, finnhub_news_source
from sources.fred import FredSeries, fred_source
from sources.pacing import Clock
from sources.polling import PollingSource
from sources.stock_trades import StockTradeSource

NEWS_MEMORY_FACTOR = 20
"""News articles remembered, per `DEDUP_MEMORY_PER_KEY`: one memory serves every ticker."""


def company_directory(settings: Settings) -> CompanyDirectory:
    settings.require("postgres_host", "postgres_db", "postgres_user", "postgres_password")
    return CompanyDirectory(partial(load_companies, settings.postgres_connect_kwargs()),
                            settings.tickers_refresh_seconds)


def alpaca_stream(settings: Settings) -> Callable[[], AlpacaTradeStream] | None:
    """Opens the live stream; None without keys."""
    if not settings.alpaca_keys_set:
        return None
    assert settings.api_key_alpaca and settings.api_secret_alpaca
    return partial(AlpacaTradeStream, settings.api_key_alpaca.get_secret_value(),
                   settings.api_secret_alpaca.get_secret_value(), feed=settings.alpaca_feed,
                   url_override=settings.alpaca_stream_url)


def stock_trade_source(settings: Settings, directory: CompanyDirectory | None = None) -> StockTradeSource:
    if settings.stock_source == "alpaca":
        settings.require("api_key_alpaca", "api_secret_alpaca")
    return StockTradeSource(directory or company_directory(settings), mode=settings.stock_source,
                            alpaca_stream=alpaca_stream(settings),
                            synthetic_trades_per_second=settings.synthetic_trades_per_second,
                            run_for_seconds=settings.produce_for_seconds)


def macro_source(settings: Settings, **polling) -> PollingSource:
    settings.require("api_key_fred")
    assert settings.api_key_fred
    fred = FredSeries(settings.api_key_fred.get_secret_value(), settings.fred_api_url, settings.fred_series_aliases,
                      settings.fred_observation_start, settings.macro_poll_seconds)
    return fred_source(fred, run_for=settings.produce_for_seconds, **polling)


def bluesky_posts_source(settings: Settings, directory: CompanyDirectory | None = None, **polling) -> PollingSource:
    settings.require("bluesky_identifier", "bluesky_password")
    assert settings.bluesky_identifier and settings.bluesky_password
    search = BlueskySearch(
        identifier=settings.bluesky_identifier, password=settings.bluesky_password.get_secret_value(),
        api_url=settings.bluesky_api_url, static_keywords=tuple(settings.bluesky_static_keywords),
        keyword_delay_seconds=settings.bluesky_keyword_delay_seconds, cycle_seconds=settings.bluesky_cycle_seconds,
        posts_per_search=settings.bluesky_posts_per_search, max_pages=settings.bluesky_max_pages,
        memory_per_keyword=settings.dedup_memory_per_key)
    return bluesky_source(search, directory or company_directory(settings), run_for=settings.produce_for_seconds,
                          **polling)


def news_source(settings: Settings, directory: CompanyDirectory | None = None, **polling) -> PollingSource:
    settings.require("finnhub_api_key")
    assert settings.finnhub_api_key
    news = FinnhubNews(settings.finnhub_api_key.get_secret_value(), settings.finnhub_api_url,
                       settings.news_poll_seconds, settings.finnhub_calls_per_minute,
                       settings.dedup_memory_per_key * NEWS_MEMORY_FACTOR)
    return finnhub_news_source(news, directory or company_directory(settings), run_for=settings.produce_for_seconds,
                               **polling)


def alpaca_history(settings: Settings, clock: Clock = Clock()) -> AlpacaTradeHistory:
    settings.require("api_key_alpaca", "api_secret_alpaca")
    assert settings.api_key_alpaca and settings.api_secret_alpaca
    return AlpacaTradeHistory(settings.api_key_alpaca.get_secret_value(), settings.api_secret_alpaca.get_secret_value(),
                              feed=settings.alpaca_feed, url_override=settings.alpaca_data_url,
                              requests_per_minute=settings.alpaca_requests_per_minute,
                              patience_seconds=settings.backfill_retry_max_seconds, clock=clock)


def news_history(settings: Settings, clock: Clock = Clock()) -> FinnhubNewsHistory:
    settings.require("finnhub_api_key")
    assert settings.finnhub_api_key
    news = FinnhubNews(settings.finnhub_api_key.get_secret_value(), settings.finnhub_api_url,
                       settings.news_poll_seconds, settings.finnhub_calls_per_minute, memory=0)
    return FinnhubNewsHistory(news, patience_seconds=settings.backfill_retry_max_seconds, clock=clock)
