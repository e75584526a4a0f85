"""finnhub -> s3://finnhub-data/ticker=…/date=…/ (date: New York date of the article)."""

from marketstream.datasets import NEWS_ARTICLES
from marketstream.runtime import consumer_needs, lazy_flow
from pipelines.consumer import build_consumer_flow

__getattr__ = lazy_flow(lambda settings: build_consumer_flow(NEWS_ARTICLES, settings), consumer_needs(NEWS_ARTICLES.bucket))
