"""The benchmark load gate on a fake /proc: process listing, CPU shares, refusing a busy machine."""
import os

import pytest

from bigvl.tools.benchmarks.machine_load import LoadGate, MachineBusy, descendants, read_proc_stat

ME = 100  # the benchmark's pid in the fake /proc; 101 its child (the open_clip server)


def stat_line(pid: int, comm: str, ppid: int, utime: int, stime: int) -> str:
    """A /proc/PID/stat line: fields 1-2, state, ppid, 9 fields, utime, stime, the rest."""
    return f"{pid} ({comm}) S {ppid} " + "0 " * 9 + f"{utime} {stime} " + "0 " * 30 + "\n"


def write_proc(root, procs: dict[int, tuple[str, int, int, str]]) -> None:
    """procs: pid → (comm, ppid, ticks, cmdline with spaces); ticks split into utime + stime."""
    for pid, (comm, ppid, ticks, cmdline) in procs.items():
        d = root / str(pid)
        d.mkdir(exist_ok=True)
        (d / "stat").write_text(stat_line(pid, comm, ppid, ticks - ticks // 4, ticks // 4))
        (d / "cmdline").write_bytes(cmdline.replace(" ", "\0").encode() + (b"\0" if cmdline else b""))


class FakeMachine:
    """A fake /proc whose ticks advance when time passes (sleep), and a settable load average."""

    def __init__(self, root, load: float, rates: dict[int, float]):
        self.root, self.load, self.rates, self.now = root, load, rates, 0.0
        self.names = {ME: ("python", 1, "python -m bigvl.tools.benchmarks.open_clip_compare"),
                      101: ("python", ME, "/venv/bin/python open_clip_reference.py train-step"),
                      7: ("kworker/0:1 (x)", 2, ""), 55: ("python", 1, "python train.py --big job")}
        self.ticks = {pid: 1000.0 for pid in self.names}
        self.write()
        (root / "self").mkdir()  # non-numeric entries are ignored

    def write(self):
        write_proc(self.root, {pid: (comm, ppid, int(self.ticks[pid]), cmd)
                               for pid, (comm, ppid, cmd) in self.names.items()})

    def sleep(self, seconds: float):
        self.now += seconds
        for pid, rate in self.rates.items():  # rate: cores busy; 100 ticks per second
            self.ticks[pid] += 100 * rate * seconds
        self.write()

    def gate(self, **kw) -> LoadGate:
        return LoadGate(proc_root=str(self.root), loadavg=lambda: (self.load, self.load, self.load),
                        clock=lambda: self.now, sleep=self.sleep, pid=ME, ticks_per_s=100.0, **kw)


def test_read_proc_stat_parses_comm_with_spaces_and_kernel_threads(tmp_path):
    FakeMachine(tmp_path, 0.0, {})
    stats = read_proc_stat(str(tmp_path))
    assert set(stats) == {ME, 101, 7, 55}
    assert stats[7] == (2, 1000, "[kworker/0:1 (x)]")  # no cmdline: the comm, parentheses kept
    assert stats[55] == (1, 1000, "python train.py --big job")
    assert descendants(stats, ME) == {ME, 101}


def test_idle_machine_passes_and_the_record_names_no_one(tmp_path):
    machine = FakeMachine(tmp_path, 0.3, {ME: 2.0, 101: 1.0})  # our own work does not count
    gate = machine.gate()
    before = gate.check()
    assert before["load"] == [0.3, 0.3, 0.3] and before["busy_processes"] == [] and before["reasons"] == []
    machine.sleep(10.0)
    record = gate.finish(before)
    assert record["busy"] is False and record["others_cpu_percent_during"] == 0.0
    assert record["load_before"] == [0.3] * 3 and record["load_after"] == [0.3] * 3


def test_high_load_average_is_refused_unless_allowed(tmp_path):
    machine = FakeMachine(tmp_path, 2.5, {})
    with pytest.raises(MachineBusy, match=r"--allow-busy.*1-min load average 2.50 > 0.75"):
        machine.gate().check()
    state = machine.gate().check(allow_busy=True)
    record = machine.gate().finish(state)
    assert record["busy"] is True and "load average 2.50" in record["busy_reasons"][0]


def test_a_busy_process_is_named_with_its_cpu_share(tmp_path):
    machine = FakeMachine(tmp_path, 0.1, {55: 0.9, 7: 0.05})  # load not yet risen: the job just started
    gate = machine.gate()
    with pytest.raises(MachineBusy, match=r"pid 55 \(python train.py --big job\) at 90 % CPU"):
        gate.check()
    state = gate.check(allow_busy=True)
    assert state["busy_processes"] == [
        {"pid": 55, "command": "python train.py --big job", "cpu_percent": 90.0},
        {"pid": 7, "command": "[kworker/0:1 (x)]", "cpu_percent": 5.0}]


def test_load_during_the_run_is_measured_and_flagged(tmp_path):
    machine = FakeMachine(tmp_path, 0.2, {})
    gate = machine.gate()
    before = gate.check()
    machine.rates = {55: 0.5, 7: 0.1, ME: 2.0}  # a job starts while we time
    machine.sleep(10.0)
    machine.names[300] = ("make", 1, "make -j2")  # a new process: all its ticks fall in the run
    machine.ticks[300] = 200.0  # 2 CPU-s
    machine.sleep(10.0)
    record = gate.finish(before)
    assert record["others_cpu_percent_during"] == pytest.approx(70.0)
    assert [r["pid"] for r in record["busy_processes_during"]] == [55, 300, 7]
    assert record["busy"] is True and "70 % CPU during the run" in record["busy_reasons"][0]


def test_wait_idle_waits_for_the_load_to_fall(tmp_path):
    (tmp_path / "busy").mkdir()
    machine = FakeMachine(tmp_path, 3.0, {})
    real_sleep = machine.sleep

    def sleep(seconds):  # the load decays as time passes
        real_sleep(seconds)
        machine.load = 3.0 if machine.now < 30 else 0.4
    machine.sleep = sleep
    state = machine.gate().check(wait_s=60.0)
    assert state["load"][0] == 0.4 and 30 <= machine.now <= 60
    busy = FakeMachine(tmp_path / "busy", 3.0, {})
    with pytest.raises(MachineBusy):
        busy.gate().check(wait_s=5.0)
    assert busy.now >= 5.0


def test_real_proc_lists_this_process_family_out(tmp_path):
    gate = LoadGate(window_s=0.05)
    state = gate.state()
    assert len(state["load"]) == 3
    assert all(r["pid"] != os.getpid() for r in state["busy_processes"])
