"""bluesky -> s3://bluesky-data/date=…/keyword=…/ (date: UTC date the post was created)."""

from marketstream.datasets import BLUESKY_POSTS
from marketstream.runtime import consumer_needs, lazy_flow
from pipelines.consumer import build_consumer_flow

__getattr__ = lazy_flow(lambda settings: build_consumer_flow(BLUESKY_POSTS, settings), consumer_needs(BLUESKY_POSTS.bucket))
