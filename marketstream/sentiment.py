"""The sentiment of a news article or a Bluesky post, scored as its message is decoded.

The model is VADER (`vaderSentiment` 3.3.2): a lexicon and rules tuned to social-media text, shipped inside
its package, so scoring runs offline and gives the same score for the same text on every host. A score is
VADER's `compound`, a float in [-1, 1] (below -0.05 reads as negative, above 0.05 as positive); each row
stores it in `sentiment` and the model that gave it in `sentiment_model` (`MODEL`), so rows scored by a
later model can be told apart. Why VADER and not the Loughran–McDonald finance lexicon: see the README
(*Sentiment and signals*; `tests/test_sentiment.py` measures both on `tests/data/sentiment_labelled.csv`).

What is scored: an article's headline and summary (a line apart), a post's text, cut after its first
`MAX_WORDS` words, counting each emoji as the words VADER spells it out with. VADER's cost grows with the
square of a text's words (its negation and idiom checks lower-case the whole text once per word: 2 000
emoji took 7 s), so the cut bounds the cost of any one message (about 20 ms at most on this machine) while
leaving typical articles and posts whole. A text with no word to score (empty, blank) gets a null
`sentiment`.

Guarantee: a deterministic function of the text and `MODEL`; it never raises on a string (a scorer failure
would be a bug: it is logged and the row stored with a null `sentiment`, never dead-lettered, since the
message itself is valid).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from functools import cache

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

log = logging.getLogger(__name__)

MODEL = "vader-3.3.2"
MAX_WORDS = 300
"""Words of a text that are scored; an emoji counts as the words of its description."""
_TOKEN = re.compile(r"\S+")


@cache
def _analyzer() -> SentimentIntensityAnalyzer:
    return SentimentIntensityAnalyzer()


@cache
def _emoji_words() -> dict[str, int]:
    """For each single-character emoji VADER knows, how many words it spells it out with."""
    return {char: len(words.split()) for char, words in _analyzer().emojis.items() if len(char) == 1}


def scored_part(text: str, max_words: int = MAX_WORDS) -> str:
    """The beginning of `text` that is scored: up to `max_words` words, an emoji counting as its words."""
    emoji = _emoji_words()
    budget = max_words
    for match in _TOKEN.finditer(text):
        token = match.group()
        cost = 1 + sum(emoji.get(char, 0) for char in token)
        if cost <= budget:
            budget -= cost
            continue
        # cut inside the token: keep its characters while they fit
        end = match.start()
        budget -= 1
        for char in token:
            budget -= emoji.get(char, 0)
            if budget < 0:
                break
            end += 1
        return text[:end]
    return text


def score(text: str) -> float | None:
    """VADER's compound score of the scored part of `text`, in [-1, 1]; None when it holds no word."""
    part = scored_part(text)
    if not part.strip():
        return None
    try:
        value = _analyzer().polarity_scores(part)["compound"]
    except Exception:  # noqa: BLE001 - a bug of the scorer must not cost a valid message; see the docstring
        log.exception("sentiment: %s failed on a text of %d characters; storing a null sentiment", MODEL, len(text))
        return None
    if not isinstance(value, float | int) or not math.isfinite(value):
        return None
    return min(max(float(value), -1.0), 1.0)


def article_text(row: dict) -> str:
    """What is scored of a news article: its headline, then its summary."""
    return f"{row['headline']}\n{row['summary']}" if row["summary"] else row["headline"]


def post_text(row: dict) -> str:
    """What is scored of a Bluesky post: its text."""
    return row["text"]


def scoring(parse: Callable[[bytes | None], dict], text_of: Callable[[dict], str]) -> Callable[[bytes | None], dict]:
    """`parse`, whose valid rows also get `sentiment` (of `text_of(row)`) and `sentiment_model`."""

    def parse_and_score(raw: bytes | None) -> dict:
        row = parse(raw)
        row["sentiment"] = score(text_of(row))
        row["sentiment_model"] = MODEL
        return row

    parse_and_score.__doc__ = f"{parse.__doc__} Scored for sentiment (`marketstream.sentiment`)."
    parse_and_score.__name__ = getattr(parse, "__name__", "parse")
    return parse_and_score
