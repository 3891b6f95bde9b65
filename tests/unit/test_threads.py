"""The engine's thread count, from the kernel's CPU accounting: the cores other work leaves."""

from __future__ import annotations

import os

from tether.backends.local.threads import READ_EVERY_S, CpuTimes, ThreadCount

CORES = os.cpu_count() or 1
TICKS = 100  # per second and core


class Machine:
    """A machine whose other processes use `elsewhere` cores while this one uses `own`."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.times = CpuTimes(busy=0, total=0, own=0)
        self.elsewhere, self.own = 0.0, 1.0

    def run(self, seconds: float) -> None:
        ticks = seconds * TICKS
        busy = min(CORES, self.elsewhere + self.own) * ticks
        self.times = CpuTimes(
            busy=self.times.busy + round(busy),
            total=self.times.total + round(CORES * ticks),
            own=self.times.own + round(self.own * ticks),
        )
        self.seconds += seconds

    def steps(self, count: ThreadCount, seconds: float) -> int:
        """Step for `seconds`, 30 ms a step; the count the last step ran on."""
        threads = count.now
        for _ in range(round(seconds / 0.03)):
            self.run(0.03)
            threads = count.next_step()
        return threads


def counted(machine: Machine, most: int = 2, tune: bool = True) -> ThreadCount:
    return ThreadCount(most, tune, read=lambda: machine.times, clock=lambda: machine.seconds)


def test_all_threads_on_a_quiet_machine_one_fewer_per_busy_core() -> None:
    machine = Machine()
    count = counted(machine, most=CORES)
    assert machine.steps(count, 2) == CORES
    machine.elsewhere = 1.0
    assert machine.steps(count, 2) == max(1, CORES - 1)
    machine.elsewhere = 0.1  # a client reading its socket: the core is still free enough
    assert machine.steps(count, 2) == CORES


def test_it_never_goes_below_one_nor_above_its_most() -> None:
    machine = Machine()
    count = counted(machine, most=1)
    machine.elsewhere = 0.0
    assert machine.steps(count, 2) == 1
    machine.elsewhere = float(CORES)  # every core taken: still one thread
    count = counted(machine, most=CORES)
    assert machine.steps(count, 2) == 1


def test_it_reads_the_accounting_at_most_twice_a_second() -> None:
    machine = Machine()
    reads = 0

    def read() -> CpuTimes:
        nonlocal reads
        reads += 1
        return machine.times

    count = ThreadCount(2, read=read, clock=lambda: machine.seconds)
    machine.steps(count, 3)
    assert reads <= 1 + 3 / READ_EVERY_S


def test_untuned_it_always_runs_on_all() -> None:
    machine = Machine()
    machine.elsewhere = float(CORES)
    assert counted(machine, most=4, tune=False).next_step() == 4


def test_the_accounting_is_parsed_from_proc() -> None:
    cpu = "cpu  1000 20 300 5000 40 5 6 70 0 0"
    own = "4242 (tether serve (x)) S 1 2 3 4 5 6 7 8 9 10 111 222 0 0 20 0 3"
    times = CpuTimes.parse(cpu, own)
    assert times == CpuTimes(busy=1000 + 20 + 300 + 5 + 6 + 70, total=1401 + 5000 + 40, own=333)
    assert CpuTimes.read() is not None  # this machine has /proc
