"""Which replayed rows the Parquet sink treats as already stored: exactly those a stored object covers."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from sinks.parquet import StoredRanges


def offsets(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def test_a_gap_between_stored_objects_is_not_stored():
    # objects [100, 200] and [301, 400] were stored, the upload of [201, 300] never completed
    stored = StoredRanges([(301, 400), (100, 200)])
    assert stored.covered(offsets(99, 100, 200, 201, 250, 300, 301, 400, 401)).tolist() == [
        False, True, True, False, False, False, True, True, False]


def test_an_object_that_spans_another_covers_its_whole_range():
    stored = StoredRanges([(201, 450), (301, 400)])
    assert stored.covered(offsets(200, 201, 420, 450, 451)).tolist() == [False, True, True, True, False]


def test_what_this_run_wrote_is_covered_from_its_first_to_its_last_offset():
    stored = StoredRanges([(10, 20)])
    stored.add_written(30, 40)
    stored.add_written(55, 60)
    assert stored.covered(offsets(5, 15, 25, 30, 45, 60, 61)).tolist() == [False, True, False, True, True, True, False]


def test_nothing_stored_covers_nothing():
    stored = StoredRanges()
    assert not stored
    assert not stored.covered(offsets(0, 1, 2)).any()


@given(st.lists(st.tuples(st.integers(0, 500), st.integers(0, 60)), max_size=20), st.lists(st.integers(0, 600), max_size=50))
def test_covered_means_inside_some_stored_range(spans, probes):
    ranges = [(first, first + length) for first, length in spans]
    expected = [any(first <= probe <= last for first, last in ranges) for probe in probes]
    assert StoredRanges(ranges).covered(offsets(*probes)).tolist() == expected
