"""Each dataflow module is a plain declaration in Bytewax's convention: importing it reads no setting and
opens no connection; `python -m bytewax.run dataflows.<name>` finds its `flow` function and calls it."""

import importlib
import inspect
import pkgutil
import socket
import sys

import pytest
from bytewax.testing import TestingSink, TestingSource

import dataflows

MODULES = sorted(f"dataflows.{info.name}" for info in pkgutil.iter_modules(dataflows.__path__))


def test_every_dataflow_module_is_found():
    assert {"dataflows.stock_consume", "dataflows.macro_consume", "dataflows.news_consume",
            "dataflows.bluesky_consume", "dataflows.stock_produce", "dataflows.lake_maintenance"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_importing_a_dataflow_module_needs_no_settings_and_connects_nowhere(name, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"importing {name} tried to connect or read settings")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr("marketstream.settings.load_settings", refuse)
    monkeypatch.setattr("marketstream.settings.get_settings", refuse)
    sys.modules.pop(name, None)
    module = importlib.import_module(name)
    assert inspect.isfunction(module.flow)
    assert inspect.signature(module.flow).parameters == {}


def test_each_dataset_goes_by_one_name():
    """Its dataflow modules, their flow ids and its SQL table all carry the dataset's name."""
    from marketstream.datasets import DATASETS, lake_tables
    from pipelines.consumer import build_consumer_flow
    from tests.conftest import make_settings

    for name, dataset in DATASETS.items():
        assert f"dataflows.{name}_consume" in MODULES and f"dataflows.{name}_produce" in MODULES
        assert build_consumer_flow(dataset, make_settings()).flow_id == f"{name}_consume"
        produce = importlib.import_module(f"dataflows.{name}_produce")
        assert produce.build_flow(make_settings(), source=TestingSource([]), sink=TestingSink([])).flow_id == f"{name}_produce"
        assert lake_tables("_synthetic")[name] == f"s3://{dataset.bucket}"
