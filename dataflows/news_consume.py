"""finnhub -> s3://finnhub-data/ticker=…/date=…/ (date: New York date of the article)."""

from marketstream import schemas
from marketstream.consumer_flow import Dataset, build_consumer_flow
from marketstream.news import parse_news
from marketstream.runtime import consumer_needs, lazy_flow

NEWS_ARTICLES = Dataset(
    name="finnhub",
    topic="finnhub",
    bucket="finnhub-data",
    schema=schemas.NEWS_ARTICLES,
    partitioning=schemas.NEWS_ARTICLES_PARTITIONING,
    few_values=schemas.NEWS_ARTICLES_FEW_VALUES,
    parse=parse_news,
)

__getattr__ = lazy_flow(lambda settings: build_consumer_flow(NEWS_ARTICLES, settings), consumer_needs(NEWS_ARTICLES.bucket))
