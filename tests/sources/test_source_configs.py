"""The plain values a source is built from never show its secret."""

from datetime import date

from sources.bluesky_posts import BlueskySearch
from sources.finnhub_news import FinnhubNews
from sources.fred import FredSeries


def test_reprs_leave_the_secret_out():
    configs = [
        BlueskySearch("me.bsky.social", "app-pass-secret", "http://x", (), 2, 30, 25, 3, 100),
        FinnhubNews("finnhub-secret", None, 60, 55, 100),
        FredSeries("fred-secret", None, {"cpi": "CPIAUCSL"}, date(2000, 1, 1), 3600),
    ]
    for config, secret in zip(configs, ("app-pass-secret", "finnhub-secret", "fred-secret")):
        assert secret not in repr(config) and type(config).__name__ in repr(config)
