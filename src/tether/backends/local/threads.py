"""How many threads each step of the engine runs on: as many as there are cores other work leaves.

llama.cpp's threads wait for each other at every operation of a step, spinning. On a quiet
2-core machine two threads prefill ~1.75x and decode ~1.5x as fast as one; with one core busy
elsewhere, a waiting thread spins on the core the other one needs, and two threads decode at half
the speed of one (measured: 15.9 against 32.1 tokens/s; prefill is even, 62 against 63).

So before a step the engine asks how much CPU the rest of the machine used lately, from the
kernel's accounting (`/proc/stat` for every process, `/proc/self/stat` for this one, stolen time
counted as used), and runs on the cores left free. Timing the steps themselves instead would
need trying the slower count now and then, which measured ~20% slower on a quiet machine, and
a step's time grows with its context anyway. Switching changes no answer: the logits are bitwise
the same on one thread or two (measured on this engine), as llama.cpp splits each operation's
rows, never a sum, between its threads.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

# How often the accounting is read again (two small files), and over what span it is compared.
READ_EVERY_S = 0.5
# A core counts as free when other work leaves at least this much of it: a thread sharing a core
# with a busy process spins away most of its turn.
FREE_CORE = 0.7


@dataclass(frozen=True)
class CpuTimes:
    """Cumulative CPU time, in clock ticks: of the whole machine, and of this process."""

    busy: int  # every CPU's time not idle (stolen time included)
    total: int  # every CPU's time
    own: int  # this process's user and system time

    @classmethod
    def read(cls) -> CpuTimes | None:
        """From /proc; None where there is none (the engine then runs on all its threads)."""
        try:
            with (
                open("/proc/stat", encoding="ascii") as machine,
                open("/proc/self/stat", encoding="ascii") as own,
            ):
                return cls.parse(machine.readline(), own.read())
        except OSError:
            return None

    @classmethod
    def parse(cls, cpu_line: str, self_stat: str) -> CpuTimes:
        # "cpu  user nice system idle iowait irq softirq steal guest guest_nice"; guest time is
        # already inside user and nice.
        user, nice, system, idle, iowait, irq, softirq, steal = (int(f) for f in cpu_line.split()[1:9])
        busy = user + nice + system + irq + softirq + steal
        # The process's command may hold spaces: fields are counted after its closing ')'.
        fields = self_stat.rsplit(")", 1)[1].split()
        own = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))
        return cls(busy=busy, total=busy + idle + iowait, own=own)


class ThreadCount:
    """Used from the model thread only (`now` excepted, which only reads)."""

    def __init__(
        self,
        most: int,
        tune: bool = True,
        read: Callable[[], CpuTimes | None] = CpuTimes.read,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.most = most
        self.now = most
        self._tune = tune
        self._read = read
        self._clock = clock
        self._cores = os.cpu_count() or 1
        self._last = read() if tune else None
        self._read_at = clock()

    def next_step(self) -> int:
        """The threads the next step should run on."""
        if self._last is None or self._clock() - self._read_at < READ_EVERY_S:
            return self.now
        current = self._read()
        if current is None or current.total <= self._last.total:
            return self.now
        elsewhere = (current.busy - self._last.busy) - (current.own - self._last.own)
        cores_used = max(0.0, self._cores * elsewhere / (current.total - self._last.total))
        self.now = max(1, min(self.most, int(self._cores - cores_used + (1 - FREE_CORE))))
        self._last, self._read_at = current, self._clock()
        return self.now
