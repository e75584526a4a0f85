"""The console's overview is read again and again while someone looks, and rests when nobody does."""

import time

from pipelines.console.data import Refresher


def test_the_overview_is_refreshed_while_asked_for_and_rests_when_not():
    rounds = []
    refresher = Refresher(lambda: rounds.append(1) or {"round": len(rounds)}, pause=0.01, idle=0.3)
    refresher.start()
    try:
        assert refresher.latest(wait=5)["round"] >= 1
        time.sleep(1.0)  # nobody asks: it rests
        resting = len(rounds)
        time.sleep(0.5)
        assert len(rounds) == resting
        refresher.latest()  # a page asks again: it wakes
        deadline = time.monotonic() + 5
        while len(rounds) == resting and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(rounds) > resting
    finally:
        refresher.stop()


def test_a_failing_round_is_shown_and_the_next_one_tries_again():
    answers = iter([RuntimeError("store down"), {"datasets": []}])

    def compute():
        answer = next(answers, {"datasets": []})
        if isinstance(answer, Exception):
            raise answer
        return answer

    refresher = Refresher(compute, pause=0.01)
    refresher.start()
    try:
        first = refresher.latest(wait=5)
        assert first["error"] == "RuntimeError: store down" or first.get("datasets") == []
        deadline = time.monotonic() + 5
        while refresher.latest().get("error") and time.monotonic() < deadline:
            time.sleep(0.01)
        assert refresher.latest()["datasets"] == [] and "took_s" in refresher.latest()
    finally:
        refresher.stop()
