"""The demo's news and posts: local stand-ins for Finnhub and Bluesky (`fakes/`) that publish, while the demo
runs, an article and a post about one of a few companies of `companies_info` every `every_seconds`, worded
from plainly good to plainly bad news, so that the news and Bluesky producers and consumers, their sentiment
and the signals have something to show without API keys.

Nothing reaches the real APIs: `producer_environment` points the producers at these servers, with their own
credentials, whatever the user's `.env` holds. Each text names its company by `company_name`, which is one of
the Bluesky producer's keywords, so its posts are attributed to that company's ticker.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timezone

from fakes.bluesky import FakeBluesky
from fakes.finnhub import FakeFinnhub
from marketstream.companies import Company

HEADLINES = (
    "{name} shares surge after record quarterly profit beats estimates",
    "{name} plunges as regulators open a fraud investigation into its accounts",
    "{name} raises its outlook on strong demand; analysts applaud",
    "{name} warns of weaker sales and cuts jobs; shares fall",
    "{name} to present at an industry conference next week",
)
POSTS = (
    "Loving the momentum in {name} today, great results and a strong outlook!",
    "{name} looks terrible here, I am selling everything. Awful guidance.",
    "Anyone else watching {name} this afternoon?",
    "Huge win for {name} holders, excellent quarter",
    "Disappointed with {name}, another bad miss",
)
COMPANIES = 3
"""How many companies the newsroom writes about: the first of `companies_info` by ticker."""


class Newsroom:
    """The two fake servers, serving from `__enter__` to `__exit__`, and a thread that publishes on them."""

    def __init__(self, companies: list[Company], every_seconds: float = 2.0,
                 now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        if not companies:
            raise ValueError("companies_info holds no company: the newsroom has no one to write about")
        self.companies = sorted(companies, key=lambda company: company.ticker)[:COMPANIES]
        self.finnhub, self.bluesky = FakeFinnhub(), FakeBluesky()
        self.published: Counter[str] = Counter()
        self._every, self._now = every_seconds, now
        self._stop = False
        self._thread = threading.Thread(target=self._publish, name="newsroom", daemon=True)

    def __enter__(self) -> "Newsroom":
        self.finnhub.__enter__()
        self.bluesky.__enter__()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop_publishing()
        self.bluesky.__exit__(*exc)
        self.finnhub.__exit__(*exc)

    def stop_publishing(self) -> None:
        """No article or post after this returns; the servers go on answering until `__exit__`."""
        self._stop = True
        while self._thread.is_alive():  # short sleeps, not a timed join (libfaketime never ends those)
            time.sleep(0.05)

    def producer_environment(self) -> dict[str, str]:
        """The settings that point `news_produce` and `bluesky_produce` at the newsroom, polling it often."""
        return {
            "FINNHUB_API_KEY": self.finnhub.token, "FINNHUB_API_URL": self.finnhub.api_url,
            "NEWS_POLL_SECONDS": "5", "FINNHUB_CALLS_PER_MINUTE": "60",
            "BLUESKY_IDENTIFIER": self.bluesky.identifier, "BLUESKY_PASSWORD": self.bluesky.password,
            "BLUESKY_API_URL": self.bluesky.url, "BLUESKY_KEYWORDS": "stock market",
            "BLUESKY_CYCLE_SECONDS": "5", "BLUESKY_KEYWORD_DELAY_SECONDS": "0",
        }

    def publish_one(self) -> None:
        """The next article and post, about the next company in turn, dated now."""
        n = self.published["articles"]
        company, at = self.companies[n % len(self.companies)], self._now()
        self.finnhub.publish(company.ticker, 900_000 + n, at, HEADLINES[n % len(HEADLINES)].format(name=company.company_name),
                             summary=f"What {company.company_name} said today.", source="Demo Wire")
        self.bluesky.post(n, POSTS[n % len(POSTS)].format(name=company.company_name), at.replace(microsecond=0))
        self.published.update(("articles", "posts"))

    def _publish(self) -> None:
        due = time.monotonic()
        while not self._stop:
            if time.monotonic() >= due:
                self.publish_one()
                due += self._every
            time.sleep(0.05)
