"""The deterministic parts of `make chaos`, without servers: the schedule is a function of its seed and keeps
quorums, the reconciliation finds what was lost, doubled or misplaced, and the report's recovery figures."""

import os
import sys
import threading
import time

import duckdb
import pyarrow as pa
import pytest
from datetime import datetime

from chaos.reconcile import bars_differences, deliveries, outside_layout
from chaos.report import BARS, Sample, lag_thresholds, percentile, recovery_after_single_faults, recovery_by_kind, \
    recovery_seconds, single_faults, throughput
from chaos.schedule import QUORUM_GROUP, QUORUM_MARGIN_SECONDS, Fault, Targets, build_schedule, overlapping, \
    quorum_violations

TARGETS = Targets(dataflows=("stock_produce", "stock_consume", "bars_consume/0", "bars_consume/1"),
                  proxies=("minio", "postgres"))


def test_the_same_seed_gives_the_same_schedule_and_another_seed_another():
    first = build_schedule(42, 1800, TARGETS)
    assert first == build_schedule(42, 1800, TARGETS)
    assert first != build_schedule(43, 1800, TARGETS)


@pytest.mark.parametrize("seed", range(20))
def test_a_schedule_never_takes_two_brokers_or_two_minio_nodes_down_at_once(seed):
    faults = build_schedule(seed, 1800, TARGETS)
    assert quorum_violations(faults) == []
    for group in set(QUORUM_GROUP.values()):
        mine = [f for f in faults if QUORUM_GROUP.get(f.kind) == group]
        assert all(later.at >= earlier.ends + QUORUM_MARGIN_SECONDS - 1e-9 for earlier, later in zip(mine, mine[1:]))
    assert all(fault.ends <= 1800 for fault in faults)


@pytest.mark.parametrize("seed", range(10))
def test_a_schedule_of_chosen_kinds_holds_those_kinds_alone_and_keeps_the_quorum_rule(seed):
    quorum = ("kill_broker", "kill_controller_leader", "kill_minio_node", "restart_postgres")
    faults = build_schedule(seed, 1800, TARGETS, 60, quorum)
    assert faults and {fault.kind for fault in faults} <= set(quorum)
    assert quorum_violations(faults) == []
    assert build_schedule(seed, 1800, TARGETS, 60) != faults  # without the choice, every kind


def test_an_unknown_or_impossible_fault_kind_is_refused_with_the_kinds_there_are():
    with pytest.raises(ValueError, match=r"unknown fault kinds \['kill_disk'\]; the kinds are sigkill_dataflow"):
        build_schedule(1, 600, TARGETS, only_kinds=("kill_broker", "kill_disk"))
    with pytest.raises(ValueError, match="no fault of the kinds"):
        build_schedule(1, 600, Targets(dataflows=()), only_kinds=("sigkill_dataflow",))


def test_a_thirty_minute_schedule_has_the_targets_faults_overlapping():
    faults = build_schedule(1, 1800, TARGETS)
    assert len(faults) >= 150
    assert len({fault.kind for fault in faults}) >= 6
    assert overlapping(faults) > 30


def test_the_quorum_check_flags_two_brokers_down_together():
    faults = [Fault(10, "kill_broker", "kafka-1", 20), Fault(25, "kill_controller_leader", "controller-leader", 5),
              Fault(12, "kill_minio_node", "minio-2", 5), Fault(12, "sigkill_dataflow", "stock_consume", 0)]
    assert quorum_violations(faults) == [(faults[0], faults[1])]


def test_deliveries_name_the_lost_the_doubled_and_the_unexpected():
    expected = [(0, 0), (0, 1), (1, 0), (1, 1)]
    stored = [(0, 0), (0, 1), (0, 1), (1, 1), (2, 9)]
    found = deliveries(expected, stored)
    assert (found.lost, found.doubled, found.unexpected) == ([(1, 0)], [(0, 1)], [(2, 9)])
    assert not found.exact and found.summary()["lost"] == 1
    assert deliveries(expected, list(reversed(expected))).exact


def _bars_connection(trades: pa.Table, bars: pa.Table) -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect()
    connection.register("trades", trades)
    connection.register("bars", bars)
    return connection


def _trades() -> pa.Table:
    stamps = [datetime(2026, 11, 24, 15, 30, s) for s in (1, 2, 30)] + [datetime(2026, 11, 24, 15, 31, 5)]
    return pa.table({"ticker": ["AAPL"] * 4, "timestamp": pa.array(stamps, pa.timestamp("us", tz="UTC")),
                     "price": [10.0, 12.0, 11.0, 9.0], "size": [1.0, 2.0, 1.0, 4.0], "kafka_offset": [0, 1, 2, 3]})


def _bars_of(connection_trades: pa.Table) -> pa.Table:
    from chaos.reconcile import AGGREGATE
    connection = duckdb.connect()
    connection.register("t", connection_trades)
    return connection.sql(AGGREGATE.format(trades="t")).fetch_arrow_table()


def test_bars_equal_to_the_aggregate_show_no_difference_and_a_wrong_or_doubled_bar_does():
    trades = _trades()
    bars = _bars_of(trades)
    assert bars_differences(_bars_connection(trades, bars), "trades", "bars") == []

    wrong_close = bars.set_column(bars.schema.get_field_index("close"), "close", pa.array([11.0, 8.0]))
    differences = bars_differences(_bars_connection(trades, wrong_close), "trades", "bars")
    assert len(differences) == 1 and "15:31" in differences[0]

    doubled = pa.concat_tables([bars, bars.slice(0, 1)])
    assert [d.endswith("2 bars") for d in bars_differences(_bars_connection(trades, doubled), "trades", "bars")] == [True]
    missing = bars.slice(1, 1)
    assert "no bar" in bars_differences(_bars_connection(trades, missing), "trades", "bars")[0]


def test_objects_outside_a_tables_layout_are_named():
    keys = ["_delta_log/00000000000000000000.json", "_delta_log/_last_checkpoint",
            "ticker=AAPL/date=2026-11-24/part-1.parquet", "_synthetic/_delta_log/00000000000000000003.json",
            "_synthetic/ticker=KO/date=2026-11-24/part-2.parquet", "_dead_letters/stock_trades/x/0/12",
            "ticker=AAPL/part-3.parquet", "stray.txt", "_other/ticker=AAPL/date=2026-11-24/part-4.parquet",
            "date=2026-11-24/ticker=AAPL/part-5.parquet"]
    assert outside_layout(keys, ["ticker", "date"], "_synthetic") == [
        "_other/ticker=AAPL/date=2026-11-24/part-4.parquet", "date=2026-11-24/ticker=AAPL/part-5.parquet",
        "stray.txt", "ticker=AAPL/part-3.parquet"]


def _sample(at: float, lag: float | None, rows: int = 0) -> Sample:
    return Sample(at, {"stock": lag, "news": 0.0}, {"stock": 0, "news": 0}, {"stock": rows, "news": 0})


def test_recovery_is_the_time_from_a_faults_end_until_every_lag_is_under_the_threshold():
    samples = [_sample(0, 1), _sample(5, 30), _sample(10, None), _sample(15, 12), _sample(20, 3), _sample(25, 2)]
    broker = Fault(2, "kill_broker", "kafka-1", 6)            # ends at 8: lag under 10 s again at 20
    kill = Fault(21, "sigkill_dataflow", "stock_consume", 0)  # at 21: the next sample, 25, is fine
    late = Fault(24, "network", "minio", 10, "latency")       # ends after the last sample
    assert recovery_seconds(broker, samples) == 12
    assert recovery_seconds(kill, samples) == 4
    assert recovery_seconds(late, samples) is None
    figures = recovery_by_kind([broker, kill, late], samples)
    assert figures["kill_broker"]["p50_s"] == 12 and figures["network"]["not_recovered"] == 1


def test_a_lag_still_under_the_threshold_right_after_a_kill_is_not_a_recovery_until_it_stays_there():
    """A killed consumer's lag passes the threshold only once it has gone that long without a commit."""
    lags = [(0, 2), (5, 3), (10, 8), (15, 16), (20, 25), (25, 4), (30, 3), (35, 12), (40, 3), (45, 2), (50, 3),
            (55, 2), (60, 3), (70, 2)]
    samples = [_sample(at, lag) for at, lag in lags]
    kill = Fault(3, "sigkill_dataflow", "stock_consume", 0)
    assert recovery_seconds(kill, samples) == 37  # at 40: 5 and 10 were under, then 15 and 20 over; 35 over too
    assert recovery_seconds(Fault(42, "network", "minio", 3, "latency"), samples) == 0  # 45 and all up to 65
    assert recovery_seconds(Fault(66, "network", "minio", 1, "latency"), samples) == 3  # the last sample: all left


def test_a_fault_came_alone_when_the_system_was_caught_up_and_nothing_else_was_on_until_it_recovered():
    lags = [(0, 1), (20, 2), (40, 25), (60, 3), (80, 2), (100, 30), (120, 30), (140, 4), (160, 2), (180, 40), (200, 35)]
    samples = [_sample(at, lag) for at, lag in lags]
    alone = Fault(24, "kill_broker", "kafka-1", 12)            # ends at 36, recovered at 60: nothing else on
    first = Fault(90, "network", "minio", 10, "latency")        # ends at 100; recovered at 140, but ...
    second = Fault(110, "sigkill_dataflow", "stock_consume", 0)  # ... this one began before that
    behind = Fault(124, "sigstop_dataflow", "news_consume", 6)  # began while the lag was 30 s: not caught up
    never = Fault(170, "restart_postgres", "postgres", 4)       # never recovered, and alone until the end
    faults = [alone, first, second, behind, never]
    assert single_faults(faults, samples) == [alone, never]
    # a fault beginning during another's recovery takes both out; one ending just as another began, too
    assert single_faults([alone, Fault(50, "network", "kafka-1", 2, "reset_peer")], samples) == []
    assert single_faults([Fault(10, "network", "minio", 14, "latency"), alone], samples) == []
    figures = recovery_after_single_faults(faults, samples)
    assert (figures["faults"], figures["p50_s"], figures["p99_s"], figures["not_recovered"]) == (2, 24, 24, 1)
    assert figures["by_kind"]["kill_broker"]["p99_s"] == 24 and figures["by_kind"]["restart_postgres"]["not_recovered"] == 1


def test_a_sample_the_fault_itself_cut_off_does_not_stand_for_the_state_before_it():
    """A broker killed under a sample's reads leaves that sample knowing nothing; the one before tells."""
    unknown = lambda at: Sample(at, {"stock": None}, {}, {})  # noqa: E731
    samples = [_sample(0, 2), _sample(5, 3), unknown(9.5), _sample(15, 12), _sample(20, 3), _sample(25, 2),
               _sample(30, 3), _sample(35, 2), _sample(40, 2), _sample(45, 2), _sample(50, 2)]
    kill = Fault(10, "kill_broker", "kafka-2", 8)  # ends at 18, caught up from 20 on
    assert single_faults([kill], samples) == [kill]
    # a sample that knew nothing long before the fault, or knew something, still counts
    assert single_faults([Fault(10, "kill_broker", "kafka-2", 8)], [samples[0], unknown(4), *samples[3:]]) == []
    lagging = [_sample(0, 2), _sample(5, 30), *samples[3:]]
    assert single_faults([Fault(10, "kill_broker", "kafka-2", 8)], lagging) == []


def test_the_bars_count_as_caught_up_under_a_threshold_of_their_own_a_minute_and_the_lateness_above_the_rest():
    thresholds = lag_thresholds(bars_allowed_lateness_seconds=30)
    assert thresholds == {BARS: 100.0}
    with_bars = lambda stock, bars: Sample(0, {"stock": stock, BARS: bars}, {}, {})  # noqa: E731
    assert with_bars(3, 95).recovered(thresholds) and not with_bars(3, 95).recovered()
    assert not with_bars(3, 101).recovered(thresholds) and not with_bars(12, 95).recovered(thresholds)
    assert not with_bars(3, None).recovered(thresholds)
    samples = [Sample(t, {"stock": 1.0, BARS: behind}, {}, {}) for t, behind in ((0, 40), (10, 150), (20, 120), (30, 90))]
    kill = Fault(5, "sigkill_dataflow", "bars_consume-0", 0)
    assert recovery_seconds(kill, samples, thresholds) == 25 and recovery_seconds(kill, samples) is None


def test_percentiles_are_nearest_rank_and_throughput_is_rows_a_second():
    values = list(range(1, 101))
    assert (percentile(values, 0.5), percentile(values, 0.99), percentile([], 0.5)) == (50, 99, None)
    samples = [_sample(0, 0, 0), _sample(5, 0, 1000), _sample(10, None, None), _sample(15, 0, 3000)]
    assert throughput(samples, "stock") == [(5, 200.0), (15, 200.0)]


class _Stack:
    """Servers that take `up_seconds` to come back, recording when each was killed and back."""

    def __init__(self, up_seconds: float):
        self.up_seconds, self.events = up_seconds, []

    def kill(self, name, signum=None):
        self.events.append(("killed", name, time.monotonic()))

    def start(self, name):
        time.sleep(self.up_seconds)
        self.events.append(("up", name, time.monotonic()))

    def controller_leader(self):
        return "kafka-2"

    def alive(self, name):
        return True


def test_the_runner_takes_a_broker_down_only_once_the_last_one_is_back_up_even_late():
    from chaos.run import FaultRunner

    stack = _Stack(up_seconds=1.5)
    faults = [Fault(0.0, "kill_broker", "kafka-1", 0.3), Fault(0.5, "kill_controller_leader", "controller-leader", 0.3),
              Fault(0.6, "kill_minio_node", "minio-3", 0.2)]
    runner = FaultRunner(supervisor=None, stack=stack, proxies={})
    began = time.monotonic()
    carried_out = runner.run(faults, began, tick=lambda: None, until=60)
    for thread in runner._threads:
        thread.join(10)
    kills = [(name, at) for event, name, at in stack.events if event == "killed"]
    ups = [at for event, _, at in stack.events if event == "up"]
    assert [name for name, _ in kills] == ["kafka-1", "minio-3", "kafka-2"]
    assert kills[2][1] >= ups[0]  # the second broker went down after the first was back
    assert carried_out[1].at >= 1.5 and carried_out[2].at < 1.0  # the MinIO node was not held back


def test_each_node_fault_starts_again_the_server_it_took_down_and_waits_for_that_one_alone():
    """A full `stack up` after each node fault waited for every server, so a node's restart waited behind
    another's and for nodes killed meanwhile: 110-290 s on the loaded box where one took 5-60."""
    from chaos.run import FaultRunner

    stack = _Stack(up_seconds=1.0)
    faults = [Fault(0.0, "kill_controller_leader", "controller-leader", 0.2), Fault(0.1, "restart_postgres", "postgres", 0.2),
              Fault(0.2, "kill_minio_node", "minio-4", 0.2)]
    runner = FaultRunner(supervisor=None, stack=stack, proxies={})
    began = time.monotonic()
    runner.run(faults, began, tick=lambda: None, until=60)
    for thread in runner._threads:
        thread.join(10)
    started = {name: at - began for event, name, at in stack.events if event == "up"}
    assert set(started) == {"kafka-2", "postgres", "minio-4"}  # the controller leader killed was kafka-2
    assert max(started.values()) < 2.0  # the three restarts at once, not one after the other (3.4 s)
    restarts = [entry["up_seconds"] for entry in runner.log if entry["what"] == "restarted"]
    assert len(restarts) == 3 and all(1.0 <= seconds < 1.8 for seconds in restarts)


def test_the_runner_leaves_out_a_broker_fault_delayed_past_the_end_of_the_run():
    from chaos.run import FaultRunner

    stack = _Stack(up_seconds=2.0)
    faults = [Fault(0.0, "kill_broker", "kafka-1", 0.2), Fault(0.3, "kill_broker", "kafka-3", 0.2)]
    runner = FaultRunner(supervisor=None, stack=stack, proxies={})
    carried_out = runner.run(faults, time.monotonic(), tick=lambda: None, until=1.0)
    for thread in runner._threads:
        thread.join(10)
    assert [fault.target for fault in carried_out] == ["kafka-1"]
    assert [name for event, name, _ in stack.events if event == "killed"] == ["kafka-1"]
    assert any(entry["what"].startswith("skipped") and "kafka-3" in entry["fault"] for entry in runner.log)


def test_the_runner_stops_postgresql_again_only_once_it_is_back_up():
    """Seen in the 30-minute soak: a stop scheduled while PostgreSQL was still starting found no process."""
    from chaos.run import FaultRunner

    stack = _Stack(up_seconds=1.5)
    faults = [Fault(0.0, "restart_postgres", "postgres", 0.2), Fault(0.5, "restart_postgres", "postgres", 0.2),
              Fault(0.6, "kill_broker", "kafka-1", 0.2)]
    runner = FaultRunner(supervisor=None, stack=stack, proxies={})
    carried_out = runner.run(faults, time.monotonic(), tick=lambda: None, until=60)
    for thread in runner._threads:
        thread.join(10)
    kills = [(name, at) for event, name, at in stack.events if event == "killed"]
    ups = [at for event, _, at in stack.events if event == "up"]
    assert [name for name, _ in kills] == ["postgres", "kafka-1", "postgres"]
    assert kills[2][1] >= ups[0]  # stopped again after it was back
    assert carried_out[1].at >= 1.5 and carried_out[2].at < 1.0  # a broker is not held back by PostgreSQL
    assert not any(entry["what"] == "error" for entry in runner.log)


class _Toxics:
    def __init__(self):
        self.on = set()

    def add(self, name, toxic, stream, **attributes):
        self.on.add(name)

    def remove(self, name):
        self.on.remove(name)


class _Killer:
    def signal(self, name, signum):
        return True


def test_a_fault_as_carried_out_lasts_until_its_node_is_back_not_its_scheduled_end():
    """Seen in the soak of seed 45: a broker killed for 14 s took 133 s to restart, and the report counted it
    over after 14 s, so the single-fault measure took a degraded minute for a quiet one."""
    from chaos.run import FaultRunner

    stack, toxics = _Stack(up_seconds=1.5), _Toxics()
    faults = [Fault(0.0, "kill_broker", "kafka-1", 0.2), Fault(0.1, "network", "postgres", 0.3, toxic="latency"),
              Fault(0.2, "sigkill_dataflow", "stock_consume", 0.0)]
    runner = FaultRunner(supervisor=_Killer(), stack=stack, proxies={"postgres": toxics})
    as_scheduled = runner.run(faults, time.monotonic(), tick=lambda: None, until=60)
    assert [fault.seconds for fault in as_scheduled] == [0.2, 0.3, 0.0]
    for thread in runner._threads:
        thread.join(10)
    broker, toxic, kill = runner.as_carried_out()
    assert broker.ends >= 1.5 and broker.seconds >= 1.5  # down until its `stack start` returned
    assert 0.3 <= toxic.seconds < 1.0 and not toxics.on
    assert kill.seconds == 0.0


class _Proxy:
    def __init__(self):
        self.upstreams = []

    def point_to(self, upstream):
        self.upstreams.append(upstream)


def test_while_minio_node_1_is_down_its_clients_are_forwarded_to_node_2_and_back_once_it_is_up():
    from chaos.run import FaultRunner

    stack, dataflows, observer = _Stack(up_seconds=0.2), _Proxy(), _Proxy()
    faults = [Fault(0.0, "kill_minio_node", "minio-1", 0.2), Fault(0.9, "kill_minio_node", "minio-2", 0.1)]
    runner = FaultRunner(supervisor=None, stack=stack, proxies={},
                         balanced=([dataflows, observer], "127.0.0.1:19300", "127.0.0.1:19301"))
    runner.run(faults, time.monotonic(), tick=lambda: None, until=60)
    for thread in runner._threads:
        thread.join(10)
    assert dataflows.upstreams == observer.upstreams == ["127.0.0.1:19301", "127.0.0.1:19300"]
    assert [entry["what"] for entry in runner.log if "forwarded" in entry["what"]] == [
        "MinIO clients forwarded to 127.0.0.1:19301", "MinIO clients forwarded to 127.0.0.1:19300"]


def test_a_sample_stuck_on_a_dead_connection_is_recorded_as_unknown_and_sampling_goes_on():
    """Seen in CI: a lag read through the MinIO proxy hung when node 1 was killed, and no sample came after."""
    import threading

    from chaos.run import Sampler

    sampler = Sampler(settings=None)
    release = threading.Event()
    sampler._sample = lambda at: (release.wait(10), None)[1]
    began = time.monotonic()
    stuck = sampler._sample_within(0.3)
    assert time.monotonic() - began < 2
    assert stuck.lag_seconds == stuck.lag_messages == stuck.rows == {name: None for name in stuck.rows}
    assert set(stuck.rows) == {"stock", "macro", "news", "bluesky", "bars"}
    release.set()


def test_the_supervisor_restarts_an_exited_process_while_reading_another_ones_memory_is_stuck(tmp_path, monkeypatch):
    """Reading /proc/<pid>/status waits for the process's memory map (0.1-0.2 s each on a loaded machine):
    restarts must not wait behind those reads."""
    import chaos.supervisor as supervision

    stuck, reads = threading.Event(), []

    def stuck_read(pid: int) -> float:
        reads.append(pid)
        stuck.wait(30)
        return 123.0

    monkeypatch.setattr(supervision, "peak_rss_mb", stuck_read)
    monkeypatch.setattr(supervision, "RESTART_DELAY_SECONDS", 0.0)
    supervisor = supervision.Supervisor(tmp_path, tmp_path)
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    supervisor.add({"running": (sleeper, dict(os.environ))})
    supervisor.add({"killed": (sleeper, dict(os.environ))})
    supervisor.start()
    try:
        killed = supervisor.member("killed").process
        killed.kill()
        killed.wait()
        deadline = time.monotonic() + 10
        while not reads and time.monotonic() < deadline:
            time.sleep(0.01)
        assert reads, "the memory of the running processes is read"
        ticked = threading.Event()
        threading.Thread(target=lambda: (supervisor.tick(), supervisor.tick(), ticked.set()), daemon=True).start()
        assert ticked.wait(10), "a stuck read of memory held the restart back"
        assert supervisor.member("killed").process is not killed
        assert [(name, status) for _, name, status in supervisor.restarts] == [("killed", -9)]
        stuck.set()
        while "running" not in supervisor.peaks and time.monotonic() < deadline:
            time.sleep(0.01)
        assert supervisor.peaks["running"] == 123.0
    finally:
        stuck.set()
        supervisor.stop(seconds=5)


def test_a_server_start_that_keeps_failing_ends_in_one_line_with_the_stacks_reason(tmp_path, monkeypatch):
    from chaos.run import Stack

    monkeypatch.setenv("STACK_DIR", str(tmp_path / "stack"))
    monkeypatch.setenv("STACK_PROFILE", "cluster")
    with pytest.raises(RuntimeError) as failed:
        Stack(tmp_path / "no.env", {}).start("kafka-9", patience=0)
    assert str(failed.value) == ("stack/stack.sh start kafka-9 kept failing for 0 s: [stack] error: start: no server "
                                 "named kafka-9 (one of: kafka-1 kafka-2 kafka-3 minio-1 minio-2 minio-3 minio-4 postgres)")
