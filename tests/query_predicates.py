"""Row predicates for differential queries: generated with Hypothesis from the values a table holds, said
the ways the lake's readers take them — DuckDB SQL (`marketstream sql`, DuckDB over an Arrow dataset), a
polars expression, pyarrow's DNF filters (`DeltaTable.to_pandas(filters=…)`, when they can say it) — and
evaluated by plain Python over the rows, SQL's three-valued logic included: the reference every reader is
held to, computed without DuckDB, polars or Arrow compute."""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from functools import partial

import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import strategies as st

Value = str | int | float | datetime | date

COMPARISONS = ("=", "!=", "<", "<=", ">", ">=")
_REGEX_SPECIAL = set("\\.+*?()|[]{}^$#&-~")
MOST_DNF_TERMS = 32
"""A predicate whose disjunctive normal form is longer is not asked of pandas (the form grows exponentially)."""


@dataclass(frozen=True)
class Compare:
    column: str
    op: str
    value: Value


@dataclass(frozen=True)
class Among:
    """`column IN values`, or `NOT IN` when `negated`; the values hold no null."""

    column: str
    values: tuple[Value, ...]
    negated: bool = False


@dataclass(frozen=True)
class Like:
    """SQL LIKE: `%` any run of characters, `_` one character, no escape character."""

    column: str
    pattern: str


@dataclass(frozen=True)
class IsNull:
    column: str
    negated: bool = False


@dataclass(frozen=True)
class AllOf:
    parts: tuple


@dataclass(frozen=True)
class AnyOf:
    parts: tuple


Predicate = Compare | Among | Like | IsNull | AllOf | AnyOf


def kind_of(arrow_type: pa.DataType) -> str:
    """The kind of literal a column is compared with: string, int, float, timestamp, date or list."""
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "string"
    if pa.types.is_integer(arrow_type):
        return "int"
    if pa.types.is_floating(arrow_type):
        return "float"
    if pa.types.is_timestamp(arrow_type):
        return "timestamp"
    if pa.types.is_date(arrow_type):
        return "date"
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        return "list"
    raise ValueError(f"no predicates over {arrow_type}")


# --- the reference: plain Python over the rows

def like_body(pattern: str) -> str:
    """The regular expression (Python's and Rust's alike) matching what `pattern` matches with LIKE."""
    out = []
    for char in pattern:
        if char == "%":
            out.append(".*")
        elif char == "_":
            out.append(".")
        else:
            out.append("\\" + char if char in _REGEX_SPECIAL else char)
    return "".join(out)


def _and(values) -> bool | None:
    values = list(values)
    if any(value is False for value in values):
        return False
    return True if all(value is True for value in values) else None


def _or(values) -> bool | None:
    values = list(values)
    if any(value is True for value in values):
        return True
    return False if all(value is False for value in values) else None


_COMPARE = {"=": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
            "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}


def holds(predicate: Predicate, row: dict, *, null_is_not_in: bool = False) -> bool | None:
    """True, False or None (SQL's unknown) for `row`. `null_is_not_in` takes pyarrow's `is_in` semantics,
    which pandas' `not in` filter has: a null is not in any list (true), where SQL says unknown."""
    if isinstance(predicate, AllOf):
        return _and(holds(part, row, null_is_not_in=null_is_not_in) for part in predicate.parts)
    if isinstance(predicate, AnyOf):
        return _or(holds(part, row, null_is_not_in=null_is_not_in) for part in predicate.parts)
    value = row[predicate.column]
    if isinstance(predicate, IsNull):
        return (value is not None) if predicate.negated else (value is None)
    if value is None:
        return True if isinstance(predicate, Among) and predicate.negated and null_is_not_in else None
    if isinstance(predicate, Compare):
        return _COMPARE[predicate.op](value, predicate.value)
    if isinstance(predicate, Among):
        return (value in predicate.values) != predicate.negated
    return re.fullmatch(like_body(predicate.pattern), value, re.DOTALL) is not None


def asks_float_zero_among(predicate: Predicate) -> bool:
    """Whether `predicate` has a float zero in an `IN` list: pyarrow 26 misses the rows equal to it in a
    Parquet row group whose every value is zero (see `tests/test_known_reader_issues.py`)."""
    if isinstance(predicate, (AllOf, AnyOf)):
        return any(asks_float_zero_among(part) for part in predicate.parts)
    return (isinstance(predicate, Among) and not predicate.negated
            and any(isinstance(value, float) and value == 0.0 for value in predicate.values))


def likes_beyond_the_bmp(predicate: Predicate) -> bool:
    """Whether `predicate` has a LIKE pattern holding a character above U+FFFF (an emoji): Spark 3.5.3 misses
    the rows such a pattern matches whenever it matches it by regular expression, splitting the character
    into two UTF-16 halves (SPARK-55453; `tests/interop/test_spark_reads_the_lake.py` pins it)."""
    if isinstance(predicate, (AllOf, AnyOf)):
        return any(likes_beyond_the_bmp(part) for part in predicate.parts)
    return isinstance(predicate, Like) and any(ord(character) > 0xFFFF for character in predicate.pattern)


def matching(rows: list[dict], predicate: Predicate, columns: list[str], **semantics) -> Counter:
    """The multiset of `columns` of the rows `predicate` holds for."""
    return Counter(tuple(plain(row[name]) for name in columns) for row in rows
                   if holds(predicate, row, **semantics) is True)


def plain(value: object) -> object:
    """A reader's value as the plain, hashable Python value a full read gives: lists and structs as tuples, pandas and
    numpy scalars as Python's, zoned timestamps in UTC, pandas' NaN and NA for a missing value as None."""
    import numpy as np
    import pandas as pd

    if value is None or value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, (list, tuple, np.ndarray)):
        return tuple(plain(item) for item in value)
    if isinstance(value, dict):
        return tuple((name, plain(item)) for name, item in value.items())
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(timezone.utc)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


# --- the readers' languages

def quoted(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


def sql_literal(value: Value) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, bool):
        raise TypeError("no boolean columns")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"CAST('{value!r}' AS DOUBLE)"
    if isinstance(value, datetime):
        return f"TIMESTAMPTZ '{value.isoformat(sep=' ')}'"
    if isinstance(value, date):
        return f"DATE '{value.isoformat()}'"
    raise TypeError(f"no SQL literal for {value!r}")


def to_sql(predicate: Predicate) -> str:
    """The predicate as a DuckDB WHERE clause."""
    if isinstance(predicate, AllOf):
        return "(" + " AND ".join(to_sql(part) for part in predicate.parts) + ")"
    if isinstance(predicate, AnyOf):
        return "(" + " OR ".join(to_sql(part) for part in predicate.parts) + ")"
    column = quoted(predicate.column)
    if isinstance(predicate, IsNull):
        return f"{column} IS {'NOT ' if predicate.negated else ''}NULL"
    if isinstance(predicate, Compare):
        return f"{column} {predicate.op} {sql_literal(predicate.value)}"
    if isinstance(predicate, Among):
        values = ", ".join(sql_literal(value) for value in predicate.values)
        return f"{column} {'NOT IN' if predicate.negated else 'IN'} ({values})"
    return f"{column} LIKE {sql_literal(predicate.pattern)}"


def to_polars(predicate: Predicate, dtypes: dict):
    """The predicate as a polars expression, each literal of its column's type in `dtypes` (a frame's schema)."""
    import operator
    from functools import reduce

    import polars as pl

    if isinstance(predicate, (AllOf, AnyOf)):
        parts = [to_polars(part, dtypes) for part in predicate.parts]
        return reduce(operator.and_ if isinstance(predicate, AllOf) else operator.or_, parts)
    column = pl.col(predicate.column)
    dtype = dtypes[predicate.column]
    if isinstance(predicate, IsNull):
        return column.is_not_null() if predicate.negated else column.is_null()
    if isinstance(predicate, Compare):
        literal = pl.lit(predicate.value, dtype=dtype)
        return {"=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt,
                ">=": operator.ge}[predicate.op](column, literal)
    if isinstance(predicate, Among):
        among = column.is_in(pl.Series(list(predicate.values), dtype=dtype))
        return ~among if predicate.negated else among
    return column.str.contains(f"(?s)^{like_body(predicate.pattern)}$")


def to_dnf(predicate: Predicate) -> list[list[tuple]] | None:
    """pyarrow's disjunctive normal form of the predicate (what `DeltaTable.to_pandas(filters=…)` takes), or
    None when it has no way to say it (LIKE, IS NULL) or the form would be too long."""
    if isinstance(predicate, Compare):
        return [[(predicate.column, predicate.op, predicate.value)]]
    if isinstance(predicate, Among):
        return [[(predicate.column, "not in" if predicate.negated else "in", list(predicate.values))]]
    if isinstance(predicate, (Like, IsNull)):
        return None
    forms = [to_dnf(part) for part in predicate.parts]
    if any(form is None for form in forms):
        return None
    if isinstance(predicate, AnyOf):
        terms = [term for form in forms for term in form]
    else:
        terms = [[leaf for term in combination for leaf in term] for combination in itertools.product(*forms)]
    return terms if len(terms) <= MOST_DNF_TERMS else None


# --- generated predicates

@dataclass(frozen=True)
class Column:
    """A column to filter on: its name, kind, the distinct values it holds, the least and greatest of each
    file (where data skipping decides), and whether it holds a null."""

    name: str
    kind: str
    stored: tuple
    edges: tuple
    has_nulls: bool

    def __repr__(self) -> str:  # short: Hypothesis shows the strategies it draws from
        return f"Column({self.name!r}, {self.kind}, {len(self.stored)} values)"


def columns_of(table: pa.Table, files: list[pa.Table] = ()) -> list[Column]:
    """Every column of `table` with what predicates over it are drawn from; `files` are the rows of each of
    its files (their columns, partition columns aside)."""
    found = []
    for field in table.schema:
        kind = kind_of(field.type)
        values = table.column(field.name).to_pylist()
        stored = () if kind == "list" else tuple(sorted({value for value in values if value is not None}))
        edges = set()
        for rows in files:
            if kind != "list" and field.name in rows.column_names:
                bounds = pc.min_max(rows.column(field.name).cast(field.type)).values()  # a file may hold string views
                edges.update(bound.as_py() for bound in bounds if bound.is_valid)
        found.append(Column(field.name, kind, stored, tuple(sorted(edges)) or stored, None in values))
    return found


def neighbours(kind: str, value: Value) -> list[Value]:
    """Values next to a stored one, where data skipping goes wrong first: the next float either way, the
    microseconds around a timestamp and its millisecond (Delta statistics keep milliseconds), the days around
    a date, a string cut short or made longer."""
    if kind == "float":
        return [math.nextafter(value, math.inf), math.nextafter(value, -math.inf), value + 0.5, value - 0.5]
    if kind == "int":
        return [value - 1, value + 1]
    if kind == "timestamp":
        millisecond = value.replace(microsecond=value.microsecond // 1000 * 1000)
        return [value + timedelta(microseconds=step) for step in (-1, 1, -500, 500)] + [
            millisecond, millisecond + timedelta(milliseconds=1), millisecond - timedelta(microseconds=1),
            value + timedelta(seconds=1)]
    if kind == "date":
        return [value - timedelta(days=1), value + timedelta(days=1)]
    return [value[:-1], value + " ", value + "~", value[:1], value.upper()]


@st.composite
def literals(draw, column: Column) -> Value:
    """A stored value of `column` (often the least or greatest of a file) or one next to it."""
    stored = draw(st.sampled_from(column.edges if draw(st.booleans()) else column.stored))
    if draw(st.booleans()):
        return stored
    return draw(st.sampled_from(neighbours(column.kind, stored)))


@st.composite
def like_patterns(draw, column: Column, most_wildcards: int | None = None) -> str:
    """A LIKE pattern made from a stored value: a prefix, suffix or inside part between `%`, or the value with
    characters kept, dropped, or replaced by `_` or `%`; past `most_wildcards` `%`, the others are dropped."""
    value = draw(st.sampled_from(column.stored))
    start = draw(st.integers(0, len(value)))
    end = draw(st.integers(start, len(value)))
    shape = draw(st.sampled_from(["prefix", "suffix", "inside", "mixed"]))
    if shape == "prefix":
        pattern = value[:end] + "%"
    elif shape == "suffix":
        pattern = "%" + value[start:]
    elif shape == "inside":
        pattern = "%" + value[start:end] + "%"
    else:
        ways = {"keep": lambda char: char, "one": lambda char: "_", "any": lambda char: "%", "drop": lambda char: ""}
        pattern = "".join(ways[draw(st.sampled_from(["keep", "keep", "one", "any", "drop"]))](char) for char in value)
    if most_wildcards is not None:
        head, *rest = pattern.split("%")
        pattern = "%".join([head, *rest[:most_wildcards]]) + "".join(rest[most_wildcards:])
    return pattern


def leaves(column: Column, most_wildcards: int | None = None) -> st.SearchStrategy:
    name = column.name
    null_tests = st.builds(IsNull, st.just(name), st.booleans())
    if column.kind == "list" or not column.stored:
        return null_tests
    value = literals(column)
    ranges = st.tuples(value, value, st.sampled_from([(">=", "<="), (">", "<"), (">=", "<"), (">", "<=")])).map(
        lambda drawn: AllOf((Compare(name, drawn[2][0], min(drawn[0], drawn[1])),
                             Compare(name, drawn[2][1], max(drawn[0], drawn[1])))))
    options = [
        st.builds(Compare, st.just(name), st.sampled_from(COMPARISONS), value),
        st.builds(Among, st.just(name), st.lists(value, min_size=1, max_size=4, unique=True).map(tuple), st.booleans()),
        ranges,
        null_tests,
    ]
    if column.kind == "string":
        options.append(st.builds(Like, st.just(name), like_patterns(column, most_wildcards)))
    return st.one_of(options)


def predicates(columns: list[Column], most_wildcards: int | None = None) -> st.SearchStrategy:
    """Predicates over `columns`: one comparison, IN, NOT IN, range, LIKE (with at most `most_wildcards` `%`,
    if given) or null test, or AND / OR of them."""
    leaf = st.sampled_from(columns).flatmap(partial(leaves, most_wildcards=most_wildcards))
    return st.recursive(leaf, lambda children: st.one_of(
        st.lists(children, min_size=2, max_size=3).map(lambda parts: AllOf(tuple(parts))),
        st.lists(children, min_size=2, max_size=3).map(lambda parts: AnyOf(tuple(parts)))), max_leaves=4)
