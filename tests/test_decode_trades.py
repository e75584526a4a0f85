"""The batch decoder of trades gives exactly the verdicts of the per-message contract, `parse_trade`."""

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from marketstream.records import ROW_INDEX, decode_each
from marketstream.trades import COLUMNS, decode_trades, parse_trade

from datetime import datetime

valid = st.fixed_dictionaries(
    {
        "symbol": st.sampled_from(["AAPL", "BRK.B", "BF-B", "MSFT", "X"]),
        "price": st.one_of(st.floats(0.0001, 1e6), st.integers(1, 10**6), st.just(10_000_000)),
        "size": st.one_of(st.floats(0.5, 1e6), st.integers(1, 10**6)),
        "timestamp": st.one_of(
            st.sampled_from(["2026-11-24T15:30:01.123456Z", "2026-11-24T10:30:01-05:00", "2026-11-24T15:30:01Z",
                             "2026-11-24T15:30:01.123456789Z", "2026-11-24 15:30:01+00:00"]),
            st.datetimes(min_value=datetime(1990, 1, 2), max_value=datetime(2026, 11, 1)).map(lambda d: d.isoformat() + "Z"),
        ),
        "trade_id": st.one_of(st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=64),
                              st.integers(0, 2**62)),
        "source": st.sampled_from(["alpaca", "synthetic"]),
    },
    optional={
        "exchange": st.one_of(st.none(), st.sampled_from(["V", "Q", "NYSE"])),
        "tape": st.one_of(st.none(), st.sampled_from(["A", "C"])),
        "conditions": st.one_of(st.none(), st.lists(st.sampled_from(["@", "I", "F", "T"]), max_size=4)),
    },
)
odd = st.one_of(
    st.none(), st.booleans(), st.integers(-10, 10**20), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e308, 10_000_000.5, 1e10, 1e10 + 1]),
    st.text(max_size=12), st.sampled_from(["", "é", "\x00", "AB\n", "aapl", "../x", "A" * 11, "1989-12-31T23:59:59Z",
                                           "2999-01-01T00:00:00Z", "2026-02-30T00:00:00Z", "2026-11-24T15:30:01"]),
    st.sampled_from(["2026-13-45T99:00:00Z", "2026-02-29T00:00:00Z", "2026-11-24T24:00:00Z", "0000-01-01T00:00:00Z",
                     "2026-11-24T10:30:01+14:59", "2026-11-24T23:59:60Z"]),
    st.sampled_from(["x" * 65, "E" * 17, "T" * 5, "", "   "]),  # printable, but too long or empty
    st.lists(st.one_of(st.text(max_size=10), st.integers(), st.none(), st.sampled_from(["CODE9CHAR", "C" * 8])),
             max_size=18),
)


@st.composite
def mutated(draw):
    trade = draw(valid)
    trade[draw(st.sampled_from(sorted(trade) + ["exchange", "tape", "conditions"]))] = draw(odd)
    return trade


def encoded(obj) -> bytes:
    try:
        return orjson.dumps(obj)
    except TypeError:
        return b"{}"


def with_repeated_key(trade: dict, key: str, value) -> bytes:
    """The trade's JSON with `key` once more at the end (JSON allows it; the contract does not)."""
    return encoded(trade)[:-1] + b"," + orjson.dumps(key) + b":" + encoded(value) + b"}"


repeated = st.builds(with_repeated_key, valid, st.sampled_from(["symbol", "source", "price", "unknown"]),
                     st.sampled_from(["HOST", "synthetic", 1.0, {"a": 1}]))
messages = st.one_of(valid.map(encoded), mutated().map(encoded), repeated, st.binary(max_size=40), st.none(),
                     st.just(b"[1]"), st.just(b'{"price": NaN}'))


@settings(max_examples=300, deadline=None)
@given(st.lists(messages, max_size=40))
def test_batch_decoding_matches_the_per_message_contract(values):
    fast, fast_rejects = decode_trades(values)
    slow, slow_rejects = decode_each(parse_trade, COLUMNS, values)
    assert sorted(fast_rejects) == sorted(slow_rejects)
    assert fast.sort_by(ROW_INDEX).to_pylist() == slow.sort_by(ROW_INDEX).to_pylist()
    assert fast.num_rows + len(fast_rejects) == len(values)


def printable(raw: bytes | None) -> bool:
    """Printable ASCII bytes: the batches whose texts the decoder checks by length alone, unless escaped."""
    return raw is not None and all(0x20 <= byte <= 0x7E for byte in raw)


PRINTABLE = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
UNESCAPED = st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters='"\\')
# characters JSON writes as escapes of printable ASCII: the message's bytes stay printable, its texts do not
ESCAPED = st.one_of(PRINTABLE, st.sampled_from(["\x00", "\x1f", "\n", "\t", '"', "\\"]))


def texts(low: int, high: int):
    """Texts of lengths at and around `low`..`high`, of printable ASCII and characters JSON escapes."""
    sizes = st.one_of(st.sampled_from([size for size in (low - 1, low, high, high + 1) if size >= 0]),
                      st.integers(max(low - 1, 0), high + 1))
    return sizes.flatmap(lambda size: st.text(ESCAPED, min_size=size, max_size=size))


BOUNDED = {"trade_id": texts(1, 64), "exchange": texts(0, 16), "tape": texts(0, 4), "symbol": texts(1, 10),
           "conditions": st.lists(st.one_of(texts(0, 8), st.none()), max_size=17)}


@st.composite
def bounded_trades(draw):
    """A valid trade of printable ASCII with one text field drawn at and around its bounds."""
    trade = {**draw(valid), "trade_id": draw(st.text(UNESCAPED, min_size=1, max_size=64))}
    name = draw(st.sampled_from(sorted(BOUNDED)))
    trade[name] = draw(BOUNDED[name])
    return trade


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(bounded_trades().map(encoded), valid.map(encoded), mutated().map(encoded), repeated)
                .filter(printable), max_size=40))
def test_printable_batches_match_the_per_message_contract(values):
    test_batch_decoding_matches_the_per_message_contract.hypothesis.inner_test(values)


def test_well_formed_trades_take_the_fast_path(monkeypatch):
    import marketstream.trades as trades

    calls = []
    monkeypatch.setattr(trades, "parse_trade", lambda raw: calls.append(raw) or parse_trade(raw))
    good = orjson.dumps({"symbol": "AAPL", "price": 1.5, "size": 10, "timestamp": "2026-11-24T15:30:01.5Z",
                         "trade_id": "x1", "source": "alpaca", "exchange": "V", "conditions": ["@", "I"], "tape": "C"})
    table, rejects = trades.decode_trades([good] * 100 + [b"junk"])
    assert table.num_rows == 100 and len(rejects) == 1
    assert calls == [b"junk"]


def test_impossible_dates_in_a_batch_are_rejected_like_parse_would():
    import marketstream.trades as trades

    good = {"symbol": "AAPL", "price": 1.5, "size": 10, "trade_id": "x", "source": "alpaca"}
    values = [orjson.dumps({**good, "timestamp": stamp}) for stamp in
              ("2026-11-24T15:30:01Z", "2026-13-45T99:00:00Z", "2026-02-29T00:00:00Z", "2024-02-29T00:00:00Z")]
    table, rejects = trades.decode_trades(values)
    assert sorted(table.column(ROW_INDEX).to_pylist()) == [0, 3]
    assert [i for i, _ in sorted(rejects)] == [1, 2]


def test_a_repeated_key_is_refused_in_a_batch_of_good_trades():
    good = {"symbol": "AAPL", "price": 1.5, "size": 10, "timestamp": "2026-11-24T15:30:01Z", "trade_id": "x",
            "source": "alpaca"}
    values = [orjson.dumps(good)] * 50 + [with_repeated_key(good, "symbol", "HOST"),
                                          with_repeated_key(good, "note", "x")[:-1] + b',"note":"y"}']
    table, rejects = decode_trades(values)
    assert table.num_rows == 50 and set(table.column("ticker").to_pylist()) == {"AAPL"}
    assert sorted(rejects) == [(50, "duplicate key 'symbol' in a JSON object"),
                               (51, "duplicate key 'note' in a JSON object")]


def test_a_message_longer_than_a_json_block_is_read_like_the_others():
    import marketstream.trades as trades

    good = {"symbol": "AAPL", "price": 1.5, "size": 10, "timestamp": "2026-11-24T15:30:01Z", "trade_id": "x",
            "source": "alpaca"}
    long = orjson.dumps({**good, "trade_id": "y", "note": "n" * (trades._JSON_READ.block_size + 1000)})
    values = [orjson.dumps(good)] * 3 + [long, orjson.dumps(good)]
    assert trades._columns_by_arrow(values) is not None  # not sent to the per-message path
    table, rejects = decode_trades(values)
    assert rejects == [] and table.sort_by(ROW_INDEX).column("trade_id").to_pylist() == ["x", "x", "x", "y", "x"]


def test_texts_not_printable_once_decoded_make_the_batch_checked_character_by_character():
    """A control character written as a JSON escape, or one outside ASCII written as UTF-8 (a line
    separator), in one message of a batch of plain trades: the texts fit their lengths, and only the batch's
    character check finds them, as `parse_trade` does."""
    good = {"symbol": "AAPL", "price": 1.5, "size": 10, "timestamp": "2026-11-24T15:30:01Z", "trade_id": "x",
            "source": "alpaca"}
    for field, text in (("trade_id", "a\x00b"), ("trade_id", "tab\there"), ("trade_id", "a\u2028b"), ("tape", "\x7f")):
        values = [orjson.dumps(good)] * 3 + [orjson.dumps({**good, field: text})]
        table, rejects = decode_trades(values)
        assert [index for index, _ in rejects] == [3] and rejects == decode_each(parse_trade, COLUMNS, values)[1]
        assert table.num_rows == 3


@st.composite
def stamps_of_one_width(draw):
    """Timestamps all as long as a first one drawn in one of RFC 3339's shapes, most alike in shape, some with
    a character replaced by any printable one (a digit, a letter, another separator) or the pieces reordered."""
    fraction = draw(st.integers(0, 8))
    zone = draw(st.sampled_from(["Z", "+05:30", "-04:00", "z", "+0530"]))
    shape = "dddd-dd-ddTdd:dd:dd" + ("." + "d" * fraction if fraction else "") + zone
    digits = st.text(st.sampled_from("0123456789"), min_size=shape.count("d"), max_size=shape.count("d"))

    def stamp(filled: str) -> str:
        chars = iter(filled)
        return "".join(next(chars) if c == "d" else c for c in shape)

    def changed(text: str) -> str:
        at = draw(st.integers(0, len(text) - 1))
        return text[:at] + draw(st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters='"\\')) + text[at + 1:]

    stamps = [stamp(draw(digits)) for _ in range(draw(st.integers(1, 30)))]
    for at in draw(st.lists(st.integers(0, len(stamps) - 1), max_size=5)):
        stamps[at] = changed(stamps[at]) if draw(st.booleans()) else stamps[at][::-1]
    return stamps


@settings(max_examples=300, deadline=None)
@given(stamps_of_one_width())
def test_stamps_of_one_width_get_the_verdicts_of_the_per_message_contract(stamps):
    """A plain batch whose stamps are all as long checks them by their bytes, against the first one's shape:
    the verdicts stay those of `parse_trade`, whichever stamp is first, well formed or not."""
    values = [orjson.dumps({"symbol": "AAPL", "price": 1.5, "size": 10, "timestamp": stamp, "trade_id": f"t{i}",
                            "source": "alpaca"}) for i, stamp in enumerate(stamps)]
    test_batch_decoding_matches_the_per_message_contract.hypothesis.inner_test(values)


@settings(max_examples=500, deadline=None)
@given(stamps_of_one_width(), st.integers(0, 3))
def test_stamps_of_one_width_are_judged_by_their_bytes_as_the_pattern_judges_them(stamps, cut):
    """The check by bytes against the first stamp's shape agrees with the pattern on every stamp: the end-to-end
    test above cannot tell, as Arrow's parsing of the stamps afterwards refuses most malformed ones too."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from marketstream.trades import _RFC3339, _rfc3339_stamps

    column = pa.chunked_array([pa.array(["x" * 9] * cut + stamps).slice(cut)])  # an offset into its buffers
    assert _rfc3339_stamps(column, plain=True).to_pylist() == pc.match_substring_regex(column, _RFC3339).to_pylist()


def test_a_batch_of_stamps_of_one_shape_is_checked_without_the_pattern(monkeypatch):
    """The usual batch (one producer, one format) has its stamps checked by their bytes; a stamp of another
    shape of the same length, and only it, goes to the pattern."""
    import pyarrow as pa
    import pyarrow.compute as pc

    import marketstream.trades as trades

    asked = []
    regex = pc.match_substring_regex
    monkeypatch.setattr(pc, "match_substring_regex",
                        lambda values, pattern: asked.append(len(values)) or regex(values, pattern))
    good = [f"2026-11-24T15:30:{second:02d}.{second:06d}Z" for second in range(60)]
    stamps = pa.chunked_array([pa.array(good + ["2026-11-24T15:30:01.000001z", "2026-11-24T15:30:01.0+00:00"])])
    assert trades._rfc3339_stamps(stamps, plain=True).to_pylist() == [True] * 60 + [False, True]
    assert asked == [2]
    assert trades._rfc3339_stamps(stamps, plain=False).to_pylist() == [True] * 60 + [False, True]
    assert asked == [2, 62]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.text(st.sampled_from("ABZ09.-a !~"), max_size=12) | st.sampled_from(["AAPL", "X", "A" * 10, "A" * 11,
                                                                                          "BRK.B", "1A", ""]),
                min_size=1, max_size=30),
       st.integers(0, 3))
def test_symbols_of_letters_and_digits_are_judged_by_their_bytes_as_the_pattern_judges_them(symbols, cut):
    import pyarrow as pa
    import pyarrow.compute as pc

    from marketstream.trades import TICKER_PATTERN_ANCHORED, _tickers

    column = pa.chunked_array([pa.array(["ZZ"] * cut + symbols).slice(cut)])  # an offset into its buffers
    assert _tickers(column, plain=True).to_pylist() == pc.match_substring_regex(column, TICKER_PATTERN_ANCHORED).to_pylist()
