"""Is this machine quiet enough to time something? Load average, the other busy processes, and
the CPU the others used while a benchmark ran (read with psutil).

    gate = LoadGate(max_load=0.75, max_other_cpu=20.0)
    before = gate.check(allow_busy=False)       # raises MachineBusy on a loaded machine
    ... timed work ...
    record = gate.finish(before)                 # load after, others' CPU over the run, "busy"

"Others" are every process but this one and its descendants (e.g. the open_clip server the
side-by-side starts). A process's CPU % is its user + system CPU seconds over a window / the
window (100 % = one core busy).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable

import psutil

Processes = dict[int, tuple[int, float, str]]  # pid → (parent pid, user + system CPU seconds, command)


class MachineBusy(RuntimeError):
    """The machine is too loaded to time a benchmark (see `LoadGate.check`)."""


def list_processes() -> Processes:
    """pid → (parent pid, user + system CPU seconds, command) of every readable process.

    The command is the process's arguments joined by spaces (cut to 120 characters), or its
    name in brackets where it has none (kernel threads). Processes that end while being read,
    or that this user may not read, are skipped."""
    out = {}
    for proc in psutil.process_iter(["ppid", "cpu_times", "cmdline", "name"]):
        info = proc.info
        if info["cpu_times"] is None or info["ppid"] is None:  # access denied or gone while read
            continue
        command = " ".join(info["cmdline"] or []).strip() or f"[{info['name']}]"
        out[proc.pid] = (info["ppid"], info["cpu_times"].user + info["cpu_times"].system, command[:120])
    return out


def descendants(stats: Processes, root: int) -> set[int]:
    """`root` and every process below it in the parent tree of `stats`."""
    family, grew = {root}, True
    while grew:
        kids = {pid for pid, (ppid, _, _) in stats.items() if ppid in family} - family
        family |= kids
        grew = bool(kids)
    return family


def cpu_percent(before: Processes, after: Processes, seconds: float, exclude: set[int]) -> list[dict]:
    """[{pid, command, cpu_percent}] of the processes in `after` and not in `exclude`, by CPU
    over the `seconds` since `before` (all of a process's CPU time if it started in between),
    busiest first. Processes that started and ended in between are missed."""
    rows = []
    for pid, (_, cpu_s, command) in after.items():
        if pid in exclude:
            continue
        percent = 100.0 * (cpu_s - before.get(pid, (0, 0.0, ""))[1]) / max(seconds, 1e-9)
        rows.append({"pid": pid, "command": command, "cpu_percent": round(percent, 1)})
    return sorted(rows, key=lambda r: -r["cpu_percent"])


@dataclass
class LoadGate:
    """Refuses (or flags) timing on a busy machine.

    Busy before = the 1-min load average above `max_load`, or another process above
    `max_other_cpu` % of a core over a `window_s` sample. Busy during = the other processes
    together above `max_other_cpu` % over the timed run. `processes`, `loadavg`, `clock` and
    `sleep` are injectable for tests."""
    max_load: float = 0.75
    max_other_cpu: float = 20.0
    window_s: float = 1.0
    processes: Callable[[], Processes] = list_processes
    loadavg: Callable[[], tuple[float, float, float]] = psutil.getloadavg
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    pid: int = field(default_factory=os.getpid)

    def sample(self) -> tuple[Processes, float]:
        return self.processes(), self.clock()

    def others(self, before: tuple[dict, float], after: tuple[dict, float], top: int = 8) -> list[dict]:
        """The busiest other processes between two `sample()`s (at most `top`, > 0 % only)."""
        exclude = descendants(after[0], self.pid) | descendants(before[0], self.pid)
        rows = cpu_percent(before[0], after[0], after[1] - before[1], exclude)
        return [r for r in rows if r["cpu_percent"] > 0][:top]

    def state(self) -> dict:
        """{"load": [1, 5, 15 min], "busy_processes": [...] over `window_s`, "start": sample}."""
        start = self.sample()
        self.sleep(self.window_s)
        end = self.sample()
        return {"load": [round(x, 2) for x in self.loadavg()], "busy_processes": self.others(start, end),
                "start": end}

    def is_busy(self, state: dict) -> list[str]:
        """The reasons `state` counts as busy (empty: idle)."""
        reasons = []
        if state["load"][0] > self.max_load:
            reasons.append(f"1-min load average {state['load'][0]:.2f} > {self.max_load}")
        reasons += [f"pid {r['pid']} ({r['command'][:60]}) at {r['cpu_percent']:.0f} % CPU"
                    for r in state["busy_processes"] if r["cpu_percent"] > self.max_other_cpu]
        return reasons

    def check(self, allow_busy: bool = False, wait_s: float = 0.0) -> dict:
        """The state before timing; waits up to `wait_s` for the machine to quieten, then raises
        MachineBusy if still busy, unless `allow_busy` (then the state carries the reasons)."""
        deadline = self.clock() + wait_s
        state = self.state()
        while self.is_busy(state) and self.clock() < deadline:
            self.sleep(min(10.0, max(0.0, deadline - self.clock())))
            state = self.state()
        reasons = self.is_busy(state)
        if reasons and not allow_busy:
            raise MachineBusy("machine busy, refusing to time (pass --allow-busy to time anyway, flagged): "
                              + "; ".join(reasons))
        state["reasons"] = reasons
        return state

    def finish(self, before: dict) -> dict:
        """The JSON fields: load before/after, the busy processes before, the other processes'
        CPU over the run (from `before`'s last sample to now), and "busy" with its reasons."""
        end = self.sample()
        during = self.others(before["start"], end, top=8)
        others_total = round(sum(r["cpu_percent"] for r in self.others(before["start"], end, top=10**6)), 1)
        reasons = list(before["reasons"])
        if others_total > self.max_other_cpu:
            reasons.append(f"other processes used {others_total:.0f} % CPU during the run")
        return {"load_before": before["load"], "load_after": [round(x, 2) for x in self.loadavg()],
                "busy_processes_before": before["busy_processes"], "busy_processes_during": during,
                "others_cpu_percent_during": others_total, "max_load": self.max_load, "cores": psutil.cpu_count(),
                "busy": bool(reasons), "busy_reasons": reasons}
