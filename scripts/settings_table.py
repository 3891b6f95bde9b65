"""Rewrite the README's table of `tether serve` settings from their declarations in config.py."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from tether.config import markdown_table

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"(<!-- settings: begin -->\n)(?:.*?\n)?(<!-- settings: end -->)", re.DOTALL)


def main() -> int:
    text = README.read_text()
    if not BLOCK.search(text):
        print("README.md has no '<!-- settings: begin -->' ... '<!-- settings: end -->' block", file=sys.stderr)
        return 1
    README.write_text(BLOCK.sub(lambda m: m.group(1) + markdown_table() + "\n" + m.group(2), text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
