"""The benchmark load gate on a fake process table: process listing, CPU shares, refusing a busy machine."""
import os
import subprocess
import sys
from types import SimpleNamespace

import psutil
import pytest

from benchmarks import machine_load
from benchmarks.machine_load import LoadGate, MachineBusy, descendants, list_processes

ME = 100  # the benchmark's pid in the fake process table; 101 its child (the open_clip server)


class FakeMachine:
    """A fake process table whose CPU seconds advance when time passes (sleep), and a settable load average."""

    def __init__(self, load: float, rates: dict[int, float]):
        self.load, self.rates, self.now = load, rates, 0.0
        self.names = {ME: (1, "python -m benchmarks.open_clip_compare"),
                      101: (ME, "/venv/bin/python open_clip_reference.py train-step"),
                      7: (2, "[kworker/0:1 (x)]"), 55: (1, "python train.py --big job")}
        self.cpu_s = {pid: 10.0 for pid in self.names}

    def processes(self) -> machine_load.Processes:
        return {pid: (ppid, self.cpu_s[pid], cmd) for pid, (ppid, cmd) in self.names.items()}

    def sleep(self, seconds: float):
        self.now += seconds
        for pid, rate in self.rates.items():  # rate: cores busy
            self.cpu_s[pid] += rate * seconds

    def gate(self, **kw) -> LoadGate:
        return LoadGate(processes=self.processes, loadavg=lambda: (self.load, self.load, self.load),
                        clock=lambda: self.now, sleep=self.sleep, pid=ME, **kw)


def test_list_processes_names_kernel_threads_and_skips_unreadable(monkeypatch):
    times = SimpleNamespace(user=7.5, system=2.5)
    fake = [SimpleNamespace(pid=7, info={"ppid": 2, "cpu_times": times, "cmdline": [], "name": "kworker/0:1 (x)"}),
            SimpleNamespace(pid=55, info={"ppid": 1, "cpu_times": times, "name": "python",
                                          "cmdline": ["python", "train.py", "--big", "job"]}),
            SimpleNamespace(pid=9, info={"ppid": 1, "cpu_times": None, "cmdline": None, "name": "secret"})]
    monkeypatch.setattr(psutil, "process_iter", lambda attrs: iter(fake))
    stats = list_processes()
    assert stats == {7: (2, 10.0, "[kworker/0:1 (x)]"),  # no arguments: the name, parentheses kept
                     55: (1, 10.0, "python train.py --big job")}  # 9: access denied, skipped


def test_list_processes_sees_this_process_and_its_child():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        stats = list_processes()
        assert stats[os.getpid()][0] == os.getppid() and stats[os.getpid()][1] > 0
        assert child.pid in descendants(stats, os.getpid())
        assert "time.sleep(30)" in stats[child.pid][2]
    finally:
        child.kill()
        child.wait()


def test_idle_machine_passes_and_the_record_names_no_one():
    machine = FakeMachine(0.3, {ME: 2.0, 101: 1.0})  # our own work does not count
    gate = machine.gate()
    before = gate.check()
    assert before["load"] == [0.3, 0.3, 0.3] and before["busy_processes"] == [] and before["reasons"] == []
    machine.sleep(10.0)
    record = gate.finish(before)
    assert record["busy"] is False and record["others_cpu_percent_during"] == 0.0
    assert record["load_before"] == [0.3] * 3 and record["load_after"] == [0.3] * 3


def test_high_load_average_is_refused_unless_allowed():
    machine = FakeMachine(2.5, {})
    with pytest.raises(MachineBusy, match=r"--allow-busy.*1-min load average 2.50 > 0.75"):
        machine.gate().check()
    state = machine.gate().check(allow_busy=True)
    record = machine.gate().finish(state)
    assert record["busy"] is True and "load average 2.50" in record["busy_reasons"][0]


def test_a_busy_process_is_named_with_its_cpu_share():
    machine = FakeMachine(0.1, {55: 0.9, 7: 0.05})  # load not yet risen: the job just started
    gate = machine.gate()
    with pytest.raises(MachineBusy, match=r"pid 55 \(python train.py --big job\) at 90 % CPU"):
        gate.check()
    state = gate.check(allow_busy=True)
    assert state["busy_processes"] == [
        {"pid": 55, "command": "python train.py --big job", "cpu_percent": 90.0},
        {"pid": 7, "command": "[kworker/0:1 (x)]", "cpu_percent": 5.0}]


def test_load_during_the_run_is_measured_and_flagged():
    machine = FakeMachine(0.2, {})
    gate = machine.gate()
    before = gate.check()
    machine.rates = {55: 0.5, 7: 0.1, ME: 2.0}  # a job starts while we time
    machine.sleep(10.0)
    machine.names[300] = (1, "make -j2")  # a new process: all its CPU time falls in the run
    machine.cpu_s[300] = 3.0  # 15 % of a core over the 20 s, above pid 7's 10 %
    machine.sleep(10.0)
    record = gate.finish(before)
    assert record["others_cpu_percent_during"] == pytest.approx(75.0)
    assert [r["pid"] for r in record["busy_processes_during"]] == [55, 300, 7]
    assert record["busy"] is True and "75 % CPU during the run" in record["busy_reasons"][0]


def test_wait_idle_waits_for_the_load_to_fall():
    machine = FakeMachine(3.0, {})
    real_sleep = machine.sleep

    def sleep(seconds):  # the load decays as time passes
        real_sleep(seconds)
        machine.load = 3.0 if machine.now < 30 else 0.4
    machine.sleep = sleep
    state = machine.gate().check(wait_s=60.0)
    assert state["load"][0] == 0.4 and 30 <= machine.now <= 60
    busy = FakeMachine(3.0, {})
    with pytest.raises(MachineBusy):
        busy.gate().check(wait_s=5.0)
    assert busy.now >= 5.0


def test_the_real_machine_lists_this_process_family_out():
    gate = LoadGate(window_s=0.05)
    state = gate.state()
    assert len(state["load"]) == 3
    assert all(r["pid"] != os.getpid() for r in state["busy_processes"])
    assert gate.finish({**state, "reasons": []})["cores"] == psutil.cpu_count()
