"""Serving processes: one, or `--workers N` of them on one port under a supervisor.

With workers, the supervisor binds the port and starts N processes (spawned, not forked: each
starts its own interpreter, event loop and store pool) that accept on that one socket, so the
kernel hands each new connection to whichever is waiting in `accept`, the least busy. The
supervisor serves nothing itself. It passes SIGTERM and Ctrl-C on to every worker, each of which
drains as one server would (`lifecycle.py`), and SIGHUP (keys reload). A worker that dies is
started again; one that dies before it was ever ready has a problem a restart would not cure
(the database is unreachable, the model is missing), so the supervisor stops them all and exits
1. Each worker has the kernel send it SIGTERM should the supervisor die, so no worker outlives
it.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event
from types import FrameType

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from tether import tracing
from tether.app import build_app
from tether.config import Settings
from tether.logs import configure_logging
from tether.server.lifecycle import GracefulServer
from tether.server.runtime import Runtime
from tether.server.ws_protocol import guarded_protocol

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies
_BACKLOG = 2048  # pending connections the kernel holds for the workers (uvicorn's default)


def serve_process(
    settings: Settings,
    sockets: list[socket.socket] | None = None,
    on_ready: Callable[[], None] = lambda: None,
) -> None:
    """Serve in this process until a signal ends it; on `sockets` already bound, if given."""
    listening, websocket = settings.listening, settings.websocket
    runtime = Runtime()
    config = uvicorn.Config(
        build_app(settings, runtime),
        host=listening.host,
        port=listening.port,
        log_level=listening.log_level,
        # uvicorn's own format for text; for JSON its lines go to the root logger's handler.
        log_config=LOGGING_CONFIG if listening.log_format == "text" else None,
        lifespan="on",
        ws=guarded_protocol(websocket.send_stall_s),
        ws_max_size=websocket.max_message_bytes,  # over it: close 1009 (spec §3.4)
        ws_ping_interval=websocket.ping_interval_s,
        ws_ping_timeout=websocket.ping_timeout_s,
        ws_per_message_deflate=True,  # negotiated only when the client offers it
        timeout_graceful_shutdown=settings.shutdown.final_close_s,  # after GracefulServer's drain
    )
    tracing.configure()
    try:
        GracefulServer(config, runtime, settings.shutdown, on_ready).run(sockets=sockets)
    finally:
        tracing.shutdown()


def bind(settings: Settings) -> socket.socket:
    """The workers' one listening socket."""
    host, port = settings.listening.host, settings.listening.port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host.strip("[]"), port))
    sock.listen(_BACKLOG)
    sock.set_inheritable(True)
    return sock


class Supervisor:
    """Runs `settings.listening.workers` workers on `sock` until a signal stops them."""

    def __init__(self, settings: Settings, sock: socket.socket) -> None:
        self.settings = settings
        self.sock = sock
        self.context = multiprocessing.get_context("spawn")
        self.workers: dict[int, tuple[BaseProcess, Event]] = {}  # number → (process, set once ready)
        self.stopping = False

    def run(self) -> int:
        """The exit code."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._stop)
        signal.signal(signal.SIGHUP, self._pass_on)
        for number in range(self.settings.listening.workers):
            self._start(number)
        while not self.stopping:
            failed = self._restart_dead()
            if failed is not None:
                log.error("worker %d died before it was ready (exit %s): stopping", *failed)
                self._stop(signal.SIGTERM, None)
                self._wait()
                return 1
            time.sleep(0.2)
        return self._wait()

    def _start(self, number: int) -> None:
        ready = self.context.Event()
        process = self.context.Process(
            target=_worker,
            args=(self.settings, self.sock, number, ready, os.getpid()),
            name=f"tether-worker-{number}",
        )
        process.start()
        self.workers[number] = (process, ready)

    def _restart_dead(self) -> tuple[int, int | None] | None:
        """Start again each worker that died; (number, exit code) of one that died before it was
        ever ready, if any."""
        for number, (process, ready) in list(self.workers.items()):
            if process.is_alive() or self.stopping:
                continue
            if not ready.is_set():
                return number, process.exitcode
            log.warning("worker %d exited (%s); starting it again", number, process.exitcode)
            self._start(number)
        return None

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True
        self._pass_on(signal.SIGTERM, frame)

    def _pass_on(self, signum: int, frame: FrameType | None) -> None:
        for process, _ in self.workers.values():
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signum)

    def _wait(self) -> int:
        """Wait for the workers to drain (their own grace and flushes, and some more), then the
        exit code: 0 when every worker stopped cleanly."""
        shutdown = self.settings.shutdown
        deadline = time.monotonic() + shutdown.grace_s + shutdown.final_flush_s + shutdown.final_close_s + 10
        code = 0
        for process, _ in self.workers.values():
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
            code = code or (process.exitcode or 0)
        return code


def _worker(settings: Settings, sock: socket.socket, number: int, ready: Event, supervisor: int) -> None:
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != supervisor:  # it died before the line above: nothing would signal this one
        return
    configure_logging(settings.listening.log_level, settings.listening.log_format, worker=number)
    serve_process(settings, [sock], ready.set)
