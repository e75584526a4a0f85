"""Writing the lake the way the project does, for tests that read it back: trades as the producers publish
them, streamed by the consumers in rounds of small polls into many small files."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone

import orjson
from bytewax.testing import run_main

from marketstream.settings import Settings
from pipelines.consumer import build_consumer_flow
from tests.integration.kafka_helpers import produce

UTC = timezone.utc
TICKERS = ("AAPL", "MSFT", "BRK.B", "T")
SESSIONS = (date(2026, 11, 23), date(2026, 11, 24), date(2026, 11, 25))


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def trade_messages(rng: random.Random, count: int, first_id: int) -> list[tuple[bytes, bytes]]:
    """Real trades inside the sessions (a tenth on a whole second, some a few microseconds apart, one at
    the open), a few before the open (not stored), and synthetic trades at any hour."""
    messages, previous = [], None
    for i in range(count):
        source = "synthetic" if i % 4 == 3 else "alpaca"
        ticker = rng.choice(TICKERS if source == "alpaca" else ("AAPL", "ZZZ"))
        day = rng.choice(SESSIONS)
        opening = datetime(day.year, day.month, day.day, 14, 30, tzinfo=UTC)
        if source == "synthetic":
            moment = opening + timedelta(microseconds=rng.randrange(-14 * 3_600_000_000, 20 * 3_600_000_000))
        elif i % 10 == 0:
            moment = opening + timedelta(seconds=rng.randrange(6 * 3600))
        elif previous is not None and i % 7 == 1:
            moment = previous + timedelta(microseconds=rng.randrange(1, 999))
        else:
            moment = opening + timedelta(microseconds=rng.randrange(int(6.5 * 3_600_000_000)))
        if i == 5:
            moment = opening
        if i % 50 == 9:
            moment = opening - timedelta(hours=1)  # a real trade before the open: counted, not stored
        previous = moment
        body = {"symbol": ticker, "price": round(rng.uniform(20, 900), rng.choice([0, 2, 4])),
                "size": rng.choice([1, 100, 0.5, rng.randint(1, 5000)]), "timestamp": stamp(moment),
                "exchange": rng.choice(["V", "N", "Q", None]), "conditions": rng.choice([["@"], ["@", "I"], [], None]),
                "trade_id": str(first_id + i), "tape": rng.choice(["A", "C", None]), "source": source}
        messages.append((ticker.encode(), orjson.dumps(body)))
    return messages


def streamed(settings: Settings, dataset, topic: str, messages: list, rounds: int) -> None:
    """`messages` produced in `rounds`, each drained by the dataset's consumer: a commit per small poll, at
    most four rows a file."""
    dataset = replace(dataset, topic=topic)
    small = settings.model_copy(update={"kafka_stop_at_end": True, "batch_max_rows": 4,
                                        "kafka_poll_max_messages": 25, "batch_max_age_seconds": 0.05})
    size = -(-len(messages) // rounds)
    for start in range(0, len(messages), size):
        produce(settings, topic, messages[start:start + size])
        run_main(build_consumer_flow(dataset, small))
