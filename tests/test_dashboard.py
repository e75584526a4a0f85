"""The Grafana dashboard queries only metrics the dataflows serve, through the provisioned data source."""

import json
import re
from pathlib import Path

from prometheus_client import Counter, Histogram, Info

from marketstream import metrics

REPO = Path(__file__).resolve().parent.parent
DASHBOARD = REPO / "monitoring" / "grafana" / "dashboards" / "marketstream.json"
SUFFIXES = {Counter: ("_total",), Histogram: ("_bucket", "_sum", "_count"), Info: ("_info",)}


def served_names() -> set[str]:
    names = set()
    for metric in metrics.ALL:
        suffixes = SUFFIXES.get(type(metric), ("",))
        names |= {metric._name + suffix for suffix in suffixes}
    return names


def queries() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel.get("targets", [])]


def test_every_metric_the_dashboard_queries_is_served():
    asked = {name for expr in queries() for name in re.findall(r"marketstream_\w+", expr)}
    assert asked and asked <= served_names(), asked - served_names()


def test_every_served_metric_has_a_panel():
    asked = " ".join(queries())
    assert [m._name for m in metrics.ALL if m._name not in asked] == []


def test_the_panels_use_the_provisioned_prometheus_data_source():
    provisioned = (REPO / "monitoring" / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    uid = re.search(r"uid: (\S+)", provisioned).group(1)
    panels = json.loads(DASHBOARD.read_text())["panels"]
    assert {p["datasource"]["uid"] for p in panels if p["type"] != "row"} == {uid}
    compose = (REPO / "docker-compose.yml").read_text()
    for mounted in re.findall(r"\./(monitoring/\S+?):", compose):
        assert (REPO / mounted).exists(), mounted
