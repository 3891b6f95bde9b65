"""Run a pip command and say what it is doing, in a few lines instead of pip's silence or flood.

    python3 scripts/pip_progress.py LOG PYTHON -m pip install ...

The first install compiles llama.cpp from source, which takes minutes during which a quiet pip
shows nothing. This runs pip verbosely, keeps its whole output in LOG, and prints only what a
person needs: what is being installed, that a compile has started and roughly how long it takes,
and the compile's progress (the build tool's `[done/total]` counter). On failure it prints the
end of the log and where the rest is. Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import deque
from pathlib import Path

COMPILE_NOTICE = (
    "Compiling {name} from source: about 5-7 minutes on 2 cores, once (pip caches the wheel, "
    "so later installs take seconds)."
)
STEP = re.compile(r"^\s*\[\s*(\d+)\s*/\s*(\d+)\s*\]")  # Ninja: [12/180] Building CXX object ...
PERCENT = re.compile(r"^\s*\[\s*(\d+)%\]")  # Make: [ 12%] Building CXX object ...
COMPILED = re.compile(r"Building wheel for (llama[-_]cpp[-_]python)", re.IGNORECASE)
SHOWN = re.compile(
    r"^\s*(Collecting|Obtaining|Building wheel|Installing collected|Successfully|ERROR|error:)"
)
TAIL_LINES = 40


def main(argv: list[str]) -> int:
    log_path, command = Path(argv[0]), [*argv[1:], "-v"]
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    shown_percent = -1
    announced = False
    with (
        log_path.open("w") as log,
        subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        ) as pip,
    ):
        assert pip.stdout is not None
        for line in pip.stdout:
            log.write(line)
            tail.append(line)
            if compiled := COMPILED.search(line):
                if not announced:  # pip says it when the build starts and again when it ends
                    announced = True
                    print(COMPILE_NOTICE.format(name=compiled.group(1)), flush=True)
            elif progress := _percent(line):
                if progress // 10 > shown_percent // 10:  # every 10 %
                    shown_percent = progress
                    print(f"  compiling: {progress}%", flush=True)
            elif SHOWN.match(line):
                print(line.rstrip(), flush=True)
    if pip.returncode != 0:
        print("".join(tail), end="", file=sys.stderr)
        print(f"pip failed (exit {pip.returncode}); its whole output is in {log_path}", file=sys.stderr)
    return pip.returncode


def _percent(line: str) -> int | None:
    if step := STEP.match(line):
        done, total = int(step.group(1)), int(step.group(2))
        return 100 * done // total if total else None
    if percent := PERCENT.match(line):
        return int(percent.group(1))
    return None


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
