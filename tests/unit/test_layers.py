"""The layering the design states: `protocol/` is the only place that knows the JSON shapes of
the wire format. Core and server may index ASGI objects (scope, messages, headers, the query);
any other string-keyed subscript, `.get`, or dict literal there is a wire shape out of place."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest
from scripts import generated_docs

import tether

PACKAGE = Path(tether.__file__).parent
LAYERS = ("core", "server")
# What the ASGI server and Starlette hand to server code: dicts by their nature.
ASGI = frozenset({"scope", "message", "request", "headers", "query_params", "path_params"})


def _base(node: ast.expr) -> str | None:
    """The name an expression hangs from: `request.query_params.get(...)` → `request`."""
    while True:
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, ast.Attribute | ast.Subscript):
            node = node.value
        elif isinstance(node, ast.Call):
            node = node.func
        elif isinstance(node, ast.Await):
            node = node.value
        else:
            return None


def _is_str(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def wire_keys(source: str) -> Iterator[tuple[int, str]]:
    """(line, what) for each JSON key literal in `source` outside ASGI objects."""
    tree = ast.parse(source)
    asgi_arguments: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            # An ASGI message sent, or the headers of a response: not wire shapes.
            if isinstance(node.func, ast.Name | ast.Attribute) and _base(node.func) == "send":
                asgi_arguments.update(id(arg) for arg in node.args)
            asgi_arguments.update(id(k.value) for k in node.keywords if k.arg == "headers")
    for node in ast.walk(tree):
        if (isinstance(node, ast.Subscript) and _is_str(node.slice) and _base(node.value) not in ASGI) or (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("get", "pop", "setdefault")
            and node.args
            and _is_str(node.args[0])
            and _base(node.func.value) not in ASGI
        ):
            yield node.lineno, ast.unparse(node)
        elif isinstance(node, ast.Dict) and id(node) not in asgi_arguments and any(map(_is_str, node.keys)):
            yield node.lineno, ast.unparse(node)[:60]


def test_the_check_finds_what_it_is_for() -> None:
    source = (
        "def f(final, request, scope):\n"
        "    a = final['status']\n"
        "    b = final.get('output')\n"
        "    c = {'object': 'list'}\n"
        "    d = scope['type'], request.query_params.get('after'), (await request.receive())['type']\n"
        "    send({'type': 'http.response.start'})\n"
        "    e = f(headers={'cache-control': 'no-cache'})\n"
    )
    assert [line for line, _ in wire_keys(source)] == [2, 3, 4]


@pytest.mark.parametrize("layer", LAYERS)
def test_no_wire_shape_outside_protocol(layer: str) -> None:
    found = [
        f"{path.relative_to(PACKAGE)}:{line}: {what}"
        for path in sorted((PACKAGE / layer).glob("*.py"))
        for line, what in wire_keys(path.read_text())
    ]
    assert found == [], "JSON shapes belong in tether/protocol/:\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("path", "name"), [(path, name) for path, blocks in generated_docs.BLOCKS.items() for name in blocks]
)
def test_documentation_made_from_the_code_is_current(path: str, name: str) -> None:
    """The README's settings and docs/architecture.md's diagrams come from the declarations and
    the transition tables (run `python scripts/generated_docs.py` after changing those)."""
    assert generated_docs.current(path, name) == generated_docs.expected(path, name)
