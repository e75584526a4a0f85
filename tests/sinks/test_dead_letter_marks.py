"""Reading the dead-letter topic's marks at start waits for brokers that are not answering yet."""

import pytest
from confluent_kafka import KafkaError, KafkaException

import sinks.dead_letters as dead_letters


@pytest.mark.parametrize("code", [KafkaError._DESTROY_BROKER, KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT,
                                  KafkaError.LEADER_NOT_AVAILABLE])
def test_a_question_cut_off_by_a_broker_going_away_is_asked_again(code, monkeypatch):
    monkeypatch.setattr(dead_letters.time, "sleep", lambda seconds: None)
    answers = [KafkaException(KafkaError(code)), KafkaException(KafkaError(code)), (0, 5)]

    def ask():
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert dead_letters._settled(ask) == (0, 5)


def test_a_refusal_is_not_asked_again(monkeypatch):
    monkeypatch.setattr(dead_letters.time, "sleep", lambda seconds: pytest.fail("must not wait"))

    def ask():
        raise KafkaException(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED))

    with pytest.raises(KafkaException):
        dead_letters._settled(ask)
