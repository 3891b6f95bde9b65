"""Rewrite the documentation blocks made from the code: the README's table of `tether serve`
settings (from config.py) and the state diagrams of docs/architecture.md (from the transition
tables). A block sits between `<!-- NAME: begin -->` and `<!-- NAME: end -->`; a test checks
that each is current."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

from tether.config import markdown_table
from tether.core import lifecycle
from tether.server import session

ROOT = Path(__file__).resolve().parent.parent


def _diagram(text: str) -> str:
    return f"```mermaid\n{text}\n```"


BLOCKS: dict[str, dict[str, Callable[[], str]]] = {
    "README.md": {"settings": markdown_table},
    "docs/architecture.md": {
        "response-lifecycle": lambda: _diagram(lifecycle.mermaid(lifecycle.TRANSITIONS)),
        "websocket-session": lambda: _diagram(lifecycle.mermaid(session.TRANSITIONS)),
    },
}


def _pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- {name}: begin -->\n)(?:.*?\n)?(<!-- {name}: end -->)", re.DOTALL)


def current(path: str, name: str) -> str | None:
    """The block as the file has it (None: the file lacks it)."""
    found = _pattern(name).search((ROOT / path).read_text())
    return None if found is None else found.group(0)


def expected(path: str, name: str) -> str:
    return f"<!-- {name}: begin -->\n{BLOCKS[path][name]()}\n<!-- {name}: end -->"


def main() -> int:
    for path, blocks in BLOCKS.items():
        text = (ROOT / path).read_text()
        for name in blocks:
            if current(path, name) is None:
                print(
                    f"{path} has no '<!-- {name}: begin -->' ... '<!-- {name}: end -->' block",
                    file=sys.stderr,
                )
                return 1
            text = _pattern(name).sub(lambda _, p=path, n=name: expected(p, n), text)
        (ROOT / path).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
