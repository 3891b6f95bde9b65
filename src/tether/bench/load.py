"""Load on the scripted model: sustained responses per second, and idle connections held.

`throughput`: C WebSocket connections each create one short response after another for a fixed
time; responses and streamed events per second are counted at the client. `connections`: N
WebSocket connections are opened and left idle; the server's resident memory is read before and
after (from /proc, when the benchmark started the server itself).
"""

from __future__ import annotations

import asyncio
import resource
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
from websockets.asyncio.client import ClientConnection, connect

from tether.bench.agents import TERMINAL, Target

OPEN_BATCH = 200  # connections opened at once: enough to be quick, few enough for the backlog


@dataclass(frozen=True)
class Throughput:
    connections: int
    seconds: float
    responses: int  # that ended (completed), refusals not included
    events: int
    refused: int = 0  # creates answered with an `error` event (an overloaded server's 503)
    server_cpu_s: float | None = None  # CPU time of the server's processes during the run

    @property
    def responses_per_cpu_s(self) -> float | None:
        """What one core of the server does, whatever else the machine runs."""
        return None if not self.server_cpu_s else self.responses / self.server_cpu_s

    @property
    def responses_per_s(self) -> float:
        return self.responses / self.seconds

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU time of processes and their children (the workers of a supervisor)."""
    import psutil  # the bench extra

    processes = [psutil.Process(pid) for pid in pids]
    processes += [child for process in list(processes) for child in process.children(recursive=True)]
    return sum(sum(p.cpu_times()[:2]) for p in processes)


async def throughput(target: Target, connections: int, seconds: float, server_pids: list[int]) -> Throughput:
    """`server_pids`: the server's processes, whose CPU time is read before and after (none: not read)."""
    url = target.base_url.replace("http", "ws", 1) + "/responses"
    body = {"type": "response.create", "model": target.model, "store": False, "input": "ping",
            "max_output_tokens": target.max_output_tokens}  # fmt: skip
    create = orjson.dumps(body).decode()
    deadline = time.perf_counter() + seconds
    counts = [0, 0, 0]  # responses, events, refusals

    async def one_connection() -> None:
        async with connect(url, additional_headers=target.headers, max_size=None, compression=None) as ws:
            while time.perf_counter() < deadline:
                await ws.send(create)
                events, refused = await _until_terminal(ws)  # not `+= await`: it would read first
                counts[1] += events
                counts[2 if refused else 0] += 1

    cpu_before = cpu_seconds(server_pids) if server_pids else None
    started = time.perf_counter()
    await asyncio.gather(*(one_connection() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    cpu = None if cpu_before is None else cpu_seconds(server_pids) - cpu_before
    return Throughput(connections, elapsed, counts[0], counts[1], counts[2], cpu)


async def _until_terminal(ws: ClientConnection) -> tuple[int, bool]:
    """The events of one create, and whether it was refused."""
    events = 0
    async for message in ws:
        events += 1
        kind = orjson.loads(message)["type"]
        if kind in TERMINAL or kind == "error":
            return events, kind == "error"
    raise RuntimeError("the socket closed mid-response")


@dataclass(frozen=True)
class IdleConnections:
    connections: int
    open_seconds: float
    server_rss_before: int | None
    server_rss_after: int | None

    @property
    def bytes_per_connection(self) -> float | None:
        if self.server_rss_before is None or self.server_rss_after is None:
            return None
        return (self.server_rss_after - self.server_rss_before) / self.connections


async def idle_connections(target: Target, count: int, server_pid: int | None) -> IdleConnections:
    raise_fd_limit(count + 1024)
    url = target.base_url.replace("http", "ws", 1) + "/responses"
    before = rss_bytes(server_pid)
    sockets: list[ClientConnection] = []
    started = time.perf_counter()
    for first in range(0, count, OPEN_BATCH):
        batch = min(OPEN_BATCH, count - first)
        sockets += await asyncio.gather(
            *(connect(url, additional_headers=target.headers, compression=None, ping_interval=None)
              for _ in range(batch))
        )  # fmt: skip
    opened = time.perf_counter() - started
    await asyncio.sleep(1)  # let the server settle what it allocated per connection
    after = rss_bytes(server_pid)
    await asyncio.gather(*(ws.close() for ws in sockets))
    return IdleConnections(count, opened, before, after)


def raise_fd_limit(wanted: int) -> None:
    """Each connection is a file descriptor here and on the server (which inherits the limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(wanted, soft), hard), hard))


def rss_bytes(pid: int | None) -> int | None:
    if pid is None:
        return None
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return None
