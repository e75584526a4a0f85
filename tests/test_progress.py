"""Progress lines: a bar redrawn in place on a terminal, plain lines at most every few seconds elsewhere."""

import io

from pipelines.progress import Progress


def test_plain_output_says_rows_rate_and_time_left_at_most_every_interval_and_at_the_end():
    clock = [0.0]
    out = io.StringIO()
    progress = Progress("backfill trades", 4, "ticker-days", out=out, tty=False, clock=lambda: clock[0], every=6)
    for rows in (1_000, 1_000, 1_000, 1_000):
        clock[0] += 4
        progress.advance(rows=rows)
    assert out.getvalue().splitlines() == [
        "backfill trades  1/4 ticker-days  1,000 rows, 250 rows/s  about 12 s left",
        "backfill trades  3/4 ticker-days  3,000 rows, 250 rows/s  about 4 s left",
        "backfill trades  4/4 ticker-days  4,000 rows, 250 rows/s  done in 16 s",
    ]


def test_a_terminal_gets_one_line_redrawn_with_a_bar():
    clock = [0.0]
    out = io.StringIO()
    progress = Progress("maintain", 2, "tables", out=out, tty=True, clock=lambda: clock[0])
    clock[0] += 90
    progress.advance(rows=10)
    clock[0] += 90
    progress.advance()
    assert out.getvalue() == (
        "\rmaintain  [############............]  1/2 tables  10 rows, 0 rows/s  about 1 min 30 s left"
        "\rmaintain  [########################]  2/2 tables  10 rows, 0 rows/s  done in 3 min 00 s\n")
