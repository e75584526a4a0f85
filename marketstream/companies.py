"""The companies to follow: `companies_info` in PostgreSQL (ticker, company_name, related_words).

`CompanyDirectory` re-reads the table every `TICKERS_REFRESH_SECONDS`, so adding or removing a company
takes effect without a restart. If PostgreSQL is unreachable at a refresh, the last list is kept and a
warning logged; if it is unreachable at the first read, that is an error.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from marketstream.trades import TICKER_PATTERN

log = logging.getLogger(__name__)

QUERY = "SELECT ticker, company_name, related_words FROM companies_info ORDER BY ticker"


@dataclass(frozen=True)
class Company:
    ticker: str
    company_name: str
    related_words: tuple[str, ...]


def _words(value: object) -> tuple[str, ...]:
    """related_words may be a TEXT[] or a comma-separated TEXT; blanks are dropped."""
    if value is None:
        return ()
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    return tuple(word.strip() for word in items if word and word.strip())


def load_companies(connect_kwargs: dict) -> list[Company]:
    """`companies_info`, read with `psycopg.connect(**connect_kwargs)`; rows with a malformed ticker are
    logged and left out."""
    with psycopg.connect(**connect_kwargs) as conn:
        rows = conn.execute(QUERY).fetchall()
    companies = []
    for ticker, name, words in rows:
        ticker = (ticker or "").strip().upper()
        if not TICKER_PATTERN.fullmatch(ticker):
            log.warning("companies_info: ignoring row with malformed ticker %r", ticker[:32])
            continue
        companies.append(Company(ticker, (name or "").strip(), _words(words)))
    return companies


class CompanyDirectory:
    """The companies `loader` returns (e.g. `partial(load_companies, connect_kwargs)`), loaded again once
    `refresh_seconds` have passed."""

    def __init__(
        self,
        loader: Callable[[], list[Company]],
        refresh_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._loader = loader
        self._refresh_seconds = refresh_seconds
        self._clock = clock
        self._companies: list[Company] | None = None
        self._loaded_at = 0.0

    def companies(self) -> list[Company]:
        now = self._clock()
        if self._companies is None or now - self._loaded_at >= self._refresh_seconds:
            try:
                fresh = self._loader()
            except psycopg.Error as exc:
                if self._companies is None:
                    raise RuntimeError(f"cannot read companies_info from PostgreSQL: {exc}") from None
                log.warning("companies_info refresh failed, keeping %d companies: %s", len(self._companies), exc)
                fresh = self._companies
            else:
                if self._companies is not None and fresh != self._companies:
                    before = {c.ticker for c in self._companies}
                    after = {c.ticker for c in fresh}
                    log.info("companies_info changed: added %s, removed %s", sorted(after - before), sorted(before - after))
            self._companies = fresh
            self._loaded_at = now
        return self._companies

    def tickers(self) -> list[str]:
        return [company.ticker for company in self.companies()]
