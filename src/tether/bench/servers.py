"""Server processes on free loopback ports: Tether itself, or a peer to compare against.

Used by `tether bench` (to start what it measures) and by the test suite.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import string
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx

STARTUP_TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """A command that serves HTTP on `port`, ready once `ready_path` answers 200."""

    def __init__(
        self,
        command: list[str],
        port: int,
        ready_path: str,
        log_path: Path,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.command = command
        self.env = env or {}  # what it adds to the environment it starts in
        self.port = port
        self.ready_path = ready_path
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> ServerProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env}
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.command[0]} exited early:\n{self.log_path.read_text()}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}{self.ready_path}", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.command[0]} did not start:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        """SIGTERM first: Tether shuts down gracefully and stores what is running."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def kill(self) -> None:
        """SIGKILL: a crash, with no chance to finish anything."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def tether(
    db: Path,
    *args: str,
    model: str | None = "scripted",
    api_key: str | None = None,
    store: str | None = None,
    env: Mapping[str, str] | None = None,
) -> ServerProcess:
    """`model` None: the backend comes from `args` (e.g. `--upstream URL`). The SQLite file `db`
    names the log too; `store` (a `postgresql://` URL) replaces the file; `env`: variables added
    to its environment."""
    port = free_port()
    command = [sys.executable, "-m", "tether", "serve", "--port", str(port),
               "--db", store or str(db), "--log-level", "warning", *args]  # fmt: skip
    if model is not None:
        command += ["--model", model]
    if api_key:
        command += ["--api-key", api_key]
    return ServerProcess(command, port, "/healthz", db.with_suffix(".log"), env)


def llama_cpp_server(
    model_path: Path, log_path: Path, n_ctx: int = 8192, model_id: str = "SmolLM2-135M-Instruct"
) -> ServerProcess:
    """llama-cpp-python's own OpenAI server: what people run today (needs its `server` extra),
    serving the model as `model_id`.

    Its default drops a running stream when another request arrives (`interrupt_requests`);
    turned off, so that concurrent agents queue, as they do on Tether."""
    port = free_port()
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(model_path), "--port", str(port),
               "--model_alias", model_id, "--n_ctx", str(n_ctx), "--n_threads", "2",
               "--chat_format", "chatml", "--interrupt_requests", "False"]  # fmt: skip
    return ServerProcess(command, port, "/v1/models", log_path)


def nginx(template: Path, replica_ports: list[int], prefix: Path, port: int | None = None) -> ServerProcess:
    """nginx (Debian's `nginx-light`, or any on PATH) balancing the replicas on these ports, with
    `template` (`deploy/nginx.conf.template`) filled in; its files under `prefix`; on `port`, or
    a free one."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    port = port or free_port()
    prefix.mkdir(parents=True, exist_ok=True)
    lines = "\n        ".join(f"server 127.0.0.1:{p};" for p in replica_ports)
    values = {"LISTEN": f"127.0.0.1:{port}", "PREFIX": str(prefix), "REPLICAS": lines}
    config = prefix / "nginx.conf"
    config.write_text(string.Template(template.read_text()).safe_substitute(values))
    command = [binary, "-p", str(prefix), "-c", str(config), "-g", "daemon off;"]
    return ServerProcess(command, port, "/healthz", prefix / "nginx.log")


def bench_engine(log_path: Path, reasoning: int = 0) -> ServerProcess:
    """The stand-in engine of `tether.bench.engine` (`reasoning`: its `--reasoning`)."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "tether.bench.engine",
        "--port",
        str(port),
        "--reasoning",
        str(reasoning),
    ]
    return ServerProcess(command, port, "/v1/models", log_path)


@contextlib.contextmanager
def busy_cores(count: int) -> Iterator[None]:
    """`count` processes that keep a core each busy, as other work on a user's machine does."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
