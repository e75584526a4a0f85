"""Reading a running flow's Prometheus metrics in a test."""

import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def total(samples, name: str, **labels) -> float:
    return sum(value for (sample, sample_labels), value in samples.items()
               if sample == name and all(dict(sample_labels).get(k) == v for k, v in labels.items()))


def scrape_if_serving(port: int) -> dict[tuple[str, tuple], float]:
    """`scrape`, or nothing while the flow does not serve its metrics yet."""
    try:
        return scrape(port)
    except OSError:
        return {}
