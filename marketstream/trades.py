"""The `stock_trades` message: one trade as a JSON object, key = ticker.

    {"symbol": "AAPL", "price": 189.12, "size": 100, "timestamp": "2026-11-24T15:30:01.123456Z",
     "exchange": "V", "conditions": ["@"], "trade_id": "52983525029461", "tape": "C", "source": "alpaca"}

| field      | type                         | notes                                              |
|------------|------------------------------|----------------------------------------------------|
| symbol     | string, required             | `^[A-Z][A-Z0-9]{0,9}([.-][A-Z0-9]{1,4})?$`         |
| price      | number, required             | > 0 and at most 10 000 000 (`MAX_PRICE`, USD)       |
| size       | number, required             | > 0 and at most 10 000 000 000 (`MAX_SIZE`, shares) |
| timestamp  | RFC 3339 string, required    | event time with an offset; kept to microseconds, UTC |
| exchange   | string or null               | exchange code, at most 16 characters               |
| conditions | array of strings or null     | at most 16 codes of at most 8 characters           |
| trade_id   | string or integer, required  | at most 64 characters                              |
| tape       | string or null               | at most 4 characters                               |
| source     | "alpaca" or "synthetic"      |                                                    |

A message whose JSON repeats a key (at any depth) is refused: which of the values counts would depend
on the parser. The bounds are far above any real print (the dearest US share trades below $1 000 000,
the largest prints hold millions of shares) and far below what would overflow an aggregate.

`Trade.to_json` writes it; `parse_trade` validates one raw message and raises `InvalidRecord` with the
reason when it does not conform.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from marketstream import schemas
from marketstream.calendar import exchange_date, exchange_dates, nyse
from marketstream.records import (
    MAX_FUTURE,
    ROW_INDEX,
    InvalidRecord,
    check_unique_keys,
    decode_each,
    json_object,
    rfc3339,
    utc_micros,
)

SOURCES = ("alpaca", "synthetic")
TICKER_PATTERN = re.compile(r"[A-Z][A-Z0-9]{0,9}(?:[.\-][A-Z0-9]{1,4})?")
TICKER_PATTERN_ANCHORED = f"^{TICKER_PATTERN.pattern}$"
EARLIEST_TRADE = datetime(1990, 1, 1, tzinfo=timezone.utc)
_EARLIEST_MICROS = int(EARLIEST_TRADE.timestamp()) * 1_000_000
MAX_PRICE = 10_000_000.0
MAX_SIZE = 10_000_000_000.0


@dataclass(frozen=True, slots=True)
class Trade:
    symbol: str
    price: float
    size: float
    timestamp: datetime
    trade_id: str
    source: str
    exchange: str | None = None
    conditions: tuple[str, ...] = field(default_factory=tuple)
    tape: str | None = None

    @property
    def key(self) -> str:
        return self.symbol

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "symbol": self.symbol,
                "price": self.price,
                "size": self.size,
                "timestamp": rfc3339(self.timestamp),
                "exchange": self.exchange,
                "conditions": list(self.conditions),
                "trade_id": self.trade_id,
                "tape": self.tape,
                "source": self.source,
            }
        )


def _positive_number(obj: dict, name: str, most: float) -> float:
    value = obj.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidRecord(f"field '{name}' must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise InvalidRecord(f"field '{name}' must be finite and > 0, got {value!r}")
    if value > most:
        raise InvalidRecord(f"field '{name}' must be at most {most:,.0f}, got {value!r}")
    return value


def _optional_text(obj: dict, name: str, max_len: int) -> str | None:
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRecord(f"field '{name}' must be a string or null, got {type(value).__name__}")
    if len(value) > max_len or not value.isprintable():
        raise InvalidRecord(f"field '{name}' must be at most {max_len} printable characters")
    return value


def parse_trade(raw: bytes | None) -> dict:
    """Validate one `stock_trades` message and return its row, with `ticker` and `date` for partitioning."""
    obj = json_object(raw)

    symbol = obj.get("symbol")
    if not isinstance(symbol, str) or not TICKER_PATTERN.fullmatch(symbol):
        raise InvalidRecord(f"field 'symbol' is not a valid ticker: {str(symbol)[:32]!r}")
    price = _positive_number(obj, "price", MAX_PRICE)
    size = _positive_number(obj, "size", MAX_SIZE)
    micros = utc_micros(obj.get("timestamp"), "timestamp", earliest=EARLIEST_TRADE)

    trade_id = obj.get("trade_id")
    if isinstance(trade_id, int) and not isinstance(trade_id, bool):
        trade_id = str(trade_id)
    if not isinstance(trade_id, str) or not 0 < len(trade_id) <= 64 or not trade_id.isprintable():
        raise InvalidRecord("field 'trade_id' must be a non-empty string or integer of at most 64 characters")

    source = obj.get("source")
    if source not in SOURCES:
        raise InvalidRecord(f"field 'source' must be one of {SOURCES}, got {str(source)[:32]!r}")

    conditions = obj.get("conditions")
    if conditions is not None:
        if not isinstance(conditions, list) or len(conditions) > 16:
            raise InvalidRecord("field 'conditions' must be an array of at most 16 strings or null")
        for code in conditions:
            if not isinstance(code, str) or len(code) > 8 or not code.isprintable():
                raise InvalidRecord("field 'conditions' must hold strings of at most 8 printable characters")

    timestamp = datetime.fromtimestamp(micros / 1_000_000, tz=timezone.utc)
    return {
        "ticker": symbol,
        "date": exchange_date(timestamp),
        "trade_id": trade_id,
        "timestamp": micros,
        "price": price,
        "size": size,
        "exchange": _optional_text(obj, "exchange", 16),
        "conditions": conditions,
        "tape": _optional_text(obj, "tape", 4),
        "source": source,
    }


def synthetic_apart(table: pa.Table, settings) -> pa.Array:
    """Synthetic trades live under their own prefix (`STOCK_SYNTHETIC_PREFIX`), away from real data."""
    return pc.if_else(pc.equal(table.column("source"), "synthetic"), settings.stock_synthetic_prefix, "")


def outside_session(table: pa.Table) -> tuple[pa.Array, str]:
    """Real trades are stored only when their event time falls inside a regular NYSE session."""
    real, reason = pc.equal(table.column("source"), "alpaca"), "outside the NYSE regular session"
    if not pc.any(real).as_py():
        return real, reason  # the calendar is not even loaded for batches of synthetic trades alone
    micros = table.column("timestamp").cast(pa.int64()).to_numpy()
    return pc.and_(real, pa.array(~nyse().in_session_us(micros))), reason


def prepare_session_check(today: datetime | None = None) -> None:
    """Load the NYSE sessions of `today`'s year (now's, in UTC, by default), which `outside_session` needs
    for the first real trade: the exchange calendar's import and schedule take ~0.3 s of CPU."""
    nyse().prepare((today or datetime.now(timezone.utc)).year)


COLUMNS = schemas.decoded_columns(schemas.STOCK_TRADES, schemas.STOCK_TRADES_PARTITIONING)
_RFC3339 = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d)$"
_RFC3339_ASCII = re.compile(_RFC3339.removeprefix("^").removesuffix("$"), re.ASCII)


def _texts(column: pa.ChunkedArray) -> tuple[pa.StringArray, np.ndarray, pa.Buffer] | None:
    """A text column of one chunk and no null as (that chunk, its offsets, its data buffer), else None."""
    if column.num_chunks != 1 or column.null_count or column.type != pa.string() or not len(column):
        return None
    chunk = column.chunk(0)
    _, offsets, data = chunk.buffers()
    return chunk, np.frombuffer(offsets, np.int32, len(chunk) + 1, chunk.offset * 4), data


def _rfc3339_stamps(stamps: pa.ChunkedArray, plain: bool) -> pa.Array | pa.ChunkedArray:
    """Whether each of `stamps` matches `_RFC3339`. A producer writes one format, so the stamps of a batch
    usually share one shape (`2026-11-24T15:30:01.123456Z`: a digit here, that character there): in a plain
    batch (printable ASCII) whose stamps are all of one length, those of the first stamp's shape, if it
    matches, match too (the pattern asks each position for a digit or one character), and are told so by
    comparing the text's bytes at once, 0.09 ms per 5 000 stamps against the pattern's 0.45; the pattern
    judges the other stamps, and those of every other batch."""
    def matched(values):
        return pc.match_substring_regex(values, _RFC3339)

    found = _texts(stamps) if plain else None
    if found is None:
        return matched(stamps)
    chunk, offsets, data = found
    rows, width = len(chunk), int(offsets[1] - offsets[0])
    first = chunk[0].as_py()
    if (not width or int(offsets[-1] - offsets[0]) != rows * width or (np.diff(offsets) != width).any()
            or not _RFC3339_ASCII.fullmatch(first)):
        return matched(stamps)
    texts = np.frombuffer(data, np.uint8, rows * width, int(offsets[0])).reshape(rows, width)
    shape = np.frombuffer(first.encode("ascii"), np.uint8)
    digit = shape - np.uint8(48) <= 9  # unsigned: a byte below "0" wraps above 9
    alike = (texts[:, digit] - np.uint8(48) <= 9).all(axis=1) & (texts[:, ~digit] == shape[~digit]).all(axis=1)
    others = np.flatnonzero(~alike)
    if len(others):
        alike[others] = matched(chunk.take(others)).to_numpy(zero_copy_only=False)
    return pa.array(alike)


_TICKER_BYTES = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_LETTER = np.zeros(256, dtype=bool)
_LETTER[np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", np.uint8)] = True


def _tickers(symbols: pa.ChunkedArray, plain: bool) -> pa.Array | pa.ChunkedArray:
    """Whether each of `symbols` matches `TICKER_PATTERN`. In a plain batch (printable ASCII) whose symbols
    hold only letters and digits, as most do, that is a letter first and 1 to 10 characters, told from the
    text's bytes and lengths at once (0.06 ms per 5 000 symbols against the pattern's 0.19); a symbol with a
    class suffix (`BRK.B`) or any other character sends the batch to the pattern."""
    found = _texts(symbols) if plain else None
    if found is None:
        return pc.match_substring_regex(symbols, TICKER_PATTERN_ANCHORED)
    _, offsets, data = found
    start = int(offsets[0])
    text = data.slice(start, int(offsets[-1]) - start).to_pybytes()
    if text.translate(None, _TICKER_BYTES):  # a character other than a letter or a digit
        return pc.match_substring_regex(symbols, TICKER_PATTERN_ANCHORED)
    lengths = np.diff(offsets)
    ok = (lengths >= 1) & (lengths <= 10)
    if text:
        ok &= _LETTER[np.frombuffer(text, np.uint8)[np.minimum(offsets[:-1] - start, len(text) - 1)]]
    return pa.array(ok)


def _ascii(low: int, high: int) -> str:
    return r"^[\x20-\x7e]{%d,%d}$" % (low, high)


TIMESTAMP = pa.timestamp("us", tz="UTC")
_PLACEHOLDER = "1970-01-01T00:00:00Z"


def _arrow_parses(stamp: str) -> bool:
    try:
        pa.scalar(stamp).cast(TIMESTAMP)
        return True
    except (pa.ArrowInvalid, ValueError):
        return False


def _number(value) -> bool:
    kind = type(value)
    return kind is float or kind is int


_WIRE = pa.schema([
    pa.field("symbol", pa.string()), pa.field("price", pa.float64()), pa.field("size", pa.float64()),
    pa.field("timestamp", pa.string()), pa.field("trade_id", pa.string()), pa.field("source", pa.string()),
    pa.field("exchange", pa.string()), pa.field("conditions", pa.list_(pa.string())), pa.field("tape", pa.string()),
])
# "infer" rather than "ignore": Arrow then refuses a repeated key anywhere in a line (the batch goes to the
# Python path, which finds the message); other fields cost nothing, as messages normally have none
_JSON_PARSE = pajson.ParseOptions(explicit_schema=_WIRE, unexpected_field_behavior="infer")
# Arrow parses one block per thread: 256 kB blocks spread a poll's ~1.3 MB over both cores (1 MB blocks, over
# one or two; decoding 2 M trades in polls of 5 000 alone took 2.81 s instead of 3.43 s).
_JSON_READ = pajson.ReadOptions(block_size=1 << 18)
_PLAIN_BYTES = bytes(range(0x20, 0x7f)).replace(b"\\", b"")
_REQUIRED = ("symbol", "price", "size", "timestamp", "trade_id", "source")


def _columns_by_arrow(values: list) -> tuple[np.ndarray, pa.Table, bool] | None:
    """The whole batch through Arrow's JSON reader (C++) in one go, and whether the batch is plain: every
    byte printable ASCII (0x20-0x7e) but the separators, and no backslash, so each text is its raw bytes
    (no escape can hide another character) and its length alone is left to check. None if any line is
    unusual."""
    if None in values:
        index = [i for i, raw in enumerate(values) if raw]
        lines = [values[i] for i in index]
    else:
        index, lines = np.arange(len(values)), values
    if not lines:
        return None
    block = b"\n".join(lines)
    # what is left once printable bytes but the backslash are deleted: the separators, and nothing else if
    # plain. Not numpy: its two temporaries of the block's size are mapped apart in a consumer
    # (`marketstream.memory`) and fault ~560 pages per poll of 5 000 (0.73 ms), where this touches 3 (0.42)
    plain = len(block.translate(None, _PLAIN_BYTES)) == len(lines) - 1
    # a message spanning lines adds a line; an empty or blank one is skipped by the reader (rows < lines)
    if not plain and (block.count(b"\n") != len(lines) - 1 or b"\r" in block):
        return None
    try:
        table = pajson.read_json(pa.BufferReader(block), read_options=_JSON_READ, parse_options=_JSON_PARSE)
    except Exception:  # noqa: BLE001 - a type clash, a non-object, bad UTF-8: the Python path sorts it out
        return None
    if table.num_rows != len(lines):
        return None
    if table.num_columns != len(_WIRE):
        table = table.select(_WIRE.names)
    return np.asarray(index, dtype=np.int64), table, plain


def _columns_by_python(values: list) -> tuple[list[int], pa.Table, bool]:
    """Message by message with orjson, keeping those whose fields have the expected JSON types."""
    loads = orjson.loads
    index, rows = [], []
    for i, raw in enumerate(values):
        try:
            obj = loads(raw)
            check_unique_keys(raw, obj)
            p, s, t, sym = obj["price"], obj["size"], obj["timestamp"], obj["symbol"]
            tid, src, ex, cond, tp = obj["trade_id"], obj["source"], obj.get("exchange"), obj.get("conditions"), obj.get("tape")
        except Exception:  # noqa: BLE001 - anything unusual is judged by parse_trade
            continue
        if (_number(p) and _number(s) and type(t) is str and type(sym) is str and type(tid) is str
                and type(src) is str and (ex is None or type(ex) is str) and (tp is None or type(tp) is str)
                and (cond is None or (type(cond) is list and all(type(c) is str for c in cond)))):
            index.append(i)
            rows.append((sym, float(p), float(s), t, tid, src, ex, cond, tp))
    columns = list(zip(*rows)) if rows else [[] for _ in _WIRE]
    return index, pa.table([pa.array(column, f.type) for column, f in zip(columns, _WIRE)], schema=_WIRE), False


def decode_trades(values: list) -> tuple[pa.Table, list[tuple[int, str]]]:
    """`parse_trade` for a whole batch, with the same verdicts, at a fraction of the cost.

    The batch is read into columns by Arrow's JSON reader, or, if a message is unusual, message by message
    keeping those whose fields have the expected JSON types. The columns are then checked with vectorised
    Arrow kernels whose rules are at least as strict as `parse_trade`'s (ASCII-only texts, RFC 3339
    timestamps with at most microseconds; the usual batch's symbols and timestamps by their bytes, with the
    patterns' verdicts). Every message they do not accept, and only those, goes through
    `parse_trade`, which decides and gives the reason."""
    index, wire, plain = _columns_by_arrow(values) or _columns_by_python(values)
    wire = wire.combine_chunks()
    fast = None
    accepted = np.zeros(len(values), dtype=bool)
    if len(index):
        column = wire.column
        if plain:  # every text is printable ASCII already (`_columns_by_arrow`): its length is what is left
            def text(values, low: int, high: int):
                lengths = pc.binary_length(values)
                return pc.and_(pc.greater_equal(lengths, low), pc.less_equal(lengths, high))
        else:
            def text(values, low: int, high: int):
                return pc.match_substring_regex(values, _ascii(low, high))
        stamps, prices, sizes, condition_lists = column("timestamp"), column("price"), column("size"), column("conditions")
        checks = [
            *(pc.is_valid(column(name)) for name in _REQUIRED),
            _tickers(column("symbol"), plain),
            pc.is_in(column("source"), pa.array(SOURCES)),
            text(column("trade_id"), 1, 64),
            pc.fill_null(text(column("exchange"), 0, 16), True),
            pc.fill_null(text(column("tape"), 0, 4), True),
            _rfc3339_stamps(stamps, plain),
            pc.fill_null(pc.less_equal(pc.list_value_length(condition_lists), 16), True),
            *(pc.and_(pc.greater(numbers, 0.0), pc.less_equal(numbers, most))  # NaN compares false
              for numbers, most in ((prices, MAX_PRICE), (sizes, MAX_SIZE))),
        ]
        flat = pc.list_flatten(condition_lists)
        if len(flat):  # a null code is refused too
            bad_rows = pc.list_parent_indices(condition_lists).filter(pc.invert(pc.fill_null(text(flat, 0, 8), False)))
            clean = np.ones(len(index), dtype=bool)
            clean[bad_rows.to_numpy()] = False
            checks.append(pa.array(clean))
        ok = checks[0]
        for check in checks[1:]:
            ok = pc.and_(ok, check)
        ok = pc.fill_null(ok, False)
        # only well-formed stamps are parsed; the others hold a placeholder and are already rejected
        candidates = pc.if_else(ok, stamps, _PLACEHOLDER)
        try:
            parsed = pc.cast(candidates, TIMESTAMP)
        except pa.ArrowInvalid:  # an impossible date such as 2026-02-30: find it, leave it to parse_trade
            parseable = [_arrow_parses(stamp) for stamp in candidates.to_pylist()]
            ok = pc.and_(ok, pa.array(parseable))
            parsed = pc.cast(pc.if_else(ok, stamps, _PLACEHOLDER), TIMESTAMP)
        micros = parsed.cast(pa.int64())
        latest = time.time_ns() // 1_000 + int(MAX_FUTURE.total_seconds() * 1_000_000)
        ok = pc.and_(ok, pc.and_(pc.greater_equal(micros, _EARLIEST_MICROS), pc.less_equal(micros, latest)))
        rows = pa.array(index, pa.int64())
        if pc.all(ok).as_py():  # the usual batch: every row kept, nothing to take
            def kept(values):
                return values
        else:
            keep = pc.indices_nonzero(ok)
            rows = rows.take(keep)

            def kept(values):
                return values.take(keep)
        kept_stamps = kept(parsed)
        accepted[rows.to_numpy()] = True
        fast = pa.table(
            [
                kept(column("symbol")),
                exchange_dates(kept_stamps),
                kept(column("trade_id")),
                kept_stamps,
                kept(prices),
                kept(sizes),
                kept(column("exchange")),
                kept(condition_lists),
                kept(column("tape")),
                kept(column("source")),
                rows,
            ],
            schema=COLUMNS.append(pa.field(ROW_INDEX, pa.int64())),
        )
    slow = np.flatnonzero(~accepted).tolist()
    checked, rejects = decode_each(parse_trade, COLUMNS, values, slow)
    if fast is None:
        return checked, rejects
    return (pa.concat_tables([fast, checked]) if checked.num_rows else fast), rejects
