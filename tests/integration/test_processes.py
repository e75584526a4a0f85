"""The integration tests' processes do not outlive their test."""

from tests.integration.processes import kill_leftovers, logged


def test_a_process_still_running_when_its_test_ends_is_killed_and_a_finished_one_left_alone():
    finished = logged(["true"])
    finished.wait(10)
    running = logged(["sleep", "600"])
    assert kill_leftovers() == [["sleep", "600"]]
    assert running.poll() is not None and finished.returncode == 0
    assert kill_leftovers() == []
