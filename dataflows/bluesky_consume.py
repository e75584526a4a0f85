"""bluesky -> s3://bluesky-data/date=…/keyword=…/ (date: UTC date the post was created)."""

from marketstream import schemas
from marketstream.consumer_flow import Dataset, build_consumer_flow
from marketstream.runtime import consumer_needs, lazy_flow
from marketstream.social import parse_post

BLUESKY_POSTS = Dataset(
    name="bluesky",
    topic="bluesky",
    bucket="bluesky-data",
    schema=schemas.BLUESKY_POSTS,
    partitioning=schemas.BLUESKY_POSTS_PARTITIONING,
    few_values=schemas.BLUESKY_POSTS_FEW_VALUES,
    parse=parse_post,
)

__getattr__ = lazy_flow(lambda settings: build_consumer_flow(BLUESKY_POSTS, settings), consumer_needs(BLUESKY_POSTS.bucket))
