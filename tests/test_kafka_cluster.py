"""KafkaCluster without a broker: describing a topic, or reading its settings, rides out a controller that does
not answer and a topic not known yet to the broker asked."""

from concurrent.futures import Future

import pytest
from confluent_kafka import KafkaError, KafkaException

from marketstream import kafka_cluster
from marketstream.kafka_cluster import KafkaCluster


class _Description:
    class topic_id:  # noqa: N801 - shaped like confluent_kafka's Uuid
        @staticmethod
        def get_most_significant_bits():
            return 1

        @staticmethod
        def get_least_significant_bits():
            return 2

    partitions = [0, 1, 2]


class _Admin:
    """Times out (as librdkafka does while the controller it knows is dead) on the first `stalls` calls."""

    calls: list[float] = []

    def __init__(self, stalls: int):
        self.stalls = stalls

    def describe_topics(self, topics, request_timeout):
        _Admin.calls.append(request_timeout)
        future = Future()
        if len(_Admin.calls) <= self.stalls:
            future.set_exception(KafkaException(KafkaError(KafkaError._TIMED_OUT, "Timed out waiting for controller")))
        else:
            future.set_result(_Description())
        return {"topic": future}


def test_a_describe_timed_out_waiting_for_the_controller_is_asked_again_of_a_new_client(monkeypatch):
    monkeypatch.setattr(kafka_cluster, "ATTEMPT_SECONDS", 0.01)
    _Admin.calls = []
    clients = []

    def admin(self):
        clients.append(_Admin(stalls=2))
        return clients[-1]

    monkeypatch.setattr(KafkaCluster, "admin", admin)
    monkeypatch.setattr(KafkaCluster, "fresh_admin", admin)
    info = KafkaCluster({}, 3, 3)._describe("topic", timeout=5.0)
    assert (info.incarnation, info.partitions) == (f"{1:016x}{2:016x}", 3)
    assert len(_Admin.calls) == 3 and len(clients) == 3
    assert all(timeout <= 1.0 for timeout in _Admin.calls)  # never the whole patience in one attempt


class _ConfigAdmin:
    """Answers a topic's settings after `unknown` answers that the topic is not known (yet)."""

    def __init__(self, unknown: int, error=KafkaError.UNKNOWN_TOPIC_OR_PART):
        self.unknown, self.error, self.calls = unknown, error, 0

    def describe_configs(self, resources, request_timeout):
        self.calls += 1
        future = Future()
        if self.calls <= self.unknown:
            future.set_exception(KafkaException(KafkaError(self.error, "not known")))
        else:
            future.set_result({"max.message.bytes": type("Entry", (), {"value": "1048588"})()})
        return {resources[0]: future}


def test_a_topics_settings_are_asked_again_while_the_broker_does_not_know_the_topic_yet(monkeypatch):
    admin = _ConfigAdmin(unknown=3)
    monkeypatch.setattr(KafkaCluster, "admin", lambda self: admin)
    assert KafkaCluster({}, 3, 3).topic_message_limit("just-created", timeout=5.0) == 1_048_588
    assert admin.calls == 4
    refused = _ConfigAdmin(unknown=1, error=KafkaError.TOPIC_AUTHORIZATION_FAILED)
    monkeypatch.setattr(KafkaCluster, "admin", lambda self: refused)
    with pytest.raises(KafkaException, match="not known"):  # what waiting cannot mend is raised at once
        KafkaCluster({}, 3, 3).topic_message_limit("forbidden", timeout=5.0)
    assert refused.calls == 1


def test_one_admin_client_per_process_and_brokers_until_a_fresh_one_is_asked_for():
    config = {"bootstrap.servers": "127.0.0.1:1", "client.id": "shared-admin-test", "log_level": 0}
    first = KafkaCluster(dict(config), 3, 1).admin()
    assert KafkaCluster(dict(config), 6, 3).admin() is first  # another cluster object, the same brokers
    assert KafkaCluster({**config, "client.id": "other"}, 3, 1).admin() is not first
    fresh = KafkaCluster(dict(config), 3, 1).fresh_admin()
    assert fresh is not first and KafkaCluster(dict(config), 3, 1).admin() is fresh
