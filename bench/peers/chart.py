"""The bar chart of `make bench-peers`: rows/s, CPU seconds per million rows and peak RSS of each
contender, side by side, one panel per measure; a contender whose output was wrong is hatched and named so."""

from __future__ import annotations

from pathlib import Path

PANELS = (("rows_per_s", "rows/s (higher is better)"), ("cpu_s_per_million_rows", "CPU s per million rows"),
          ("peak_rss_mb", "peak RSS MB"))
COLOURS = {"stock_consume": "#1f77b4", "floor": "#7f7f7f", "spark": "#e25a1c", "quix": "#7b3fa0"}


def draw(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [name for name in COLOURS if name in results]
    figure, axes = plt.subplots(1, len(PANELS), figsize=(12, 3.6))
    for axis, (measure, title) in zip(axes, PANELS):
        values = [results[name][measure] for name in names]
        bars = axis.bar(names, values, color=[COLOURS[name] for name in names])
        for bar, name, value in zip(bars, names, values):
            if not results[name].get("correct", True):
                bar.set_hatch("//")
            axis.annotate(f"{value:,.0f}" if value >= 100 else f"{value:.1f}", (bar.get_x() + bar.get_width() / 2, value),
                          ha="center", va="bottom", fontsize=8)
        axis.set_title(title, fontsize=10)
        axis.tick_params(axis="x", labelsize=8)
        axis.spines[["top", "right"]].set_visible(False)
    wrong = [name for name in names if not results[name].get("correct", True)]
    figure.suptitle(f"Kafka → lake, {results['trades']:,} trades of {results['tickers']} tickers, one run "
                    f"({results['run']})" + (f"; wrong output: {', '.join(wrong)}" if wrong else ""), fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
