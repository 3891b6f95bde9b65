"""The live inspector, in a real headless browser (`tests/browser.py`) against a live server while
agents run over WebSockets: the pages load without console errors, live values change, a
connection's timeline shows its turns, a chain's tree matches the responses created, a
playground turn appears in its connection's timeline; a tenant's key sees its own tenant only;
without a key the inspector is refused. The screenshots in the README come from these tests."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.browser import Browser
from tests.conftest import LOCAL, SCRIPTED
from tests.server_process import TetherServer
from tests.ws_client import RawSocket
from tether.bench.servers import bench_engine
from tether.inspector.views import CONNECTIONS_SHOWN

ADMIN, ALPHA, BETA = "sk-admin-inspector", "sk-alpha-inspector", "sk-beta-inspector"


class Agent:
    """A client keeping one WebSocket open and continuing its chain turn after turn, until told
    to stop; its response ids, in order."""

    def __init__(self, server: TetherServer, key: str, store: bool) -> None:
        self.socket = RawSocket(server, key)
        self.store = store
        self.ids: list[str] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        previous = None
        while not self.stopping.is_set():
            events = self.socket.turn(input="Tell me more.", store=self.store, previous_response_id=previous)
            assert events[-1]["type"] == "response.completed", events[-1]
            previous = events[-1]["response"]["id"]
            self.ids.append(previous)
            self.stopping.wait(0.3)

    def __enter__(self) -> Agent:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(30)
        self.socket.ws.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TetherServer]:
    """Two tenants and an admin; 16-token answers at 30 ms a token."""
    tmp = tmp_path_factory.mktemp("inspector")
    (tmp / "keys").write_text(f"alpha {ALPHA}\nbeta {BETA}\n")
    args = ("--api-keys-file", str(tmp / "keys"), "--admin-key", ADMIN, "--scripted-decode-us", "30000")
    with TetherServer(tmp / "tether.db", *args) as server:
        yield server


@pytest.fixture(scope="module")
def agents(server: TetherServer) -> Iterator[tuple[Agent, Agent]]:
    with Agent(server, ALPHA, store=True) as alpha, Agent(server, BETA, store=False) as beta:
        yield alpha, beta


@pytest.fixture
def browser(server: TetherServer, tmp_path: Path) -> Iterator[Browser]:
    with Browser(server.base_url, tmp_path) as browser:
        yield browser
        assert browser.errors() == []  # no page logged an error


def cell(browser: Browser, row: str, field: str) -> str:
    return browser.find(f"{row} [data-field={field}]").text


def test_without_a_key_the_inspector_is_refused(server: TetherServer) -> None:
    base = server.base_url.removesuffix("/v1")
    with httpx.Client(base_url=base) as http:
        page = http.get("/inspector/connections/anything")
        assert page.status_code == 303 and page.headers["location"].startswith("/inspector/login")
        assert http.get("/inspector/live/connections").status_code == 401
        assert http.get("/inspector", headers={"Authorization": "Bearer sk-wrong"}).status_code == 303
        assert http.post("/inspector/login", data={"key": "sk-wrong"}).status_code == 401
        assert (
            http.get("/inspector/live/engine", headers={"Authorization": f"Bearer {ADMIN}"}).status_code
            == 200
        )
    with pytest.raises(InvalidStatus) as refused:
        connect(
            f"ws://127.0.0.1:{server.port}/inspector/playground", origin=f"http://127.0.0.1:{server.port}"
        )
    assert refused.value.response.status_code == 401


def test_the_admin_watches_every_tenant_s_connections_live(
    server: TetherServer, agents: tuple[Agent, Agent], browser: Browser
) -> None:
    browser.log_in(ADMIN)
    rows = "tr[data-connection]"
    browser.wait(
        lambda: {row.get_attribute("data-tenant") for row in browser.find_all(rows)} >= {"alpha", "beta"}
    )
    alpha = 'tr[data-tenant="alpha"]'
    sent = cell(browser, alpha, "sent")
    browser.wait(lambda: cell(browser, alpha, "sent") != sent)  # it changes as turns run, unreloaded
    assert int(cell(browser, alpha, "turns")) >= 1
    browser.wait(lambda: "reachable" in browser.find("#engine").text)
    browser.screenshot("connections")


def test_a_connection_s_timeline_shows_each_turn(
    server: TetherServer, agents: tuple[Agent, Agent], browser: Browser
) -> None:
    alpha, _ = agents
    browser.log_in(ADMIN)
    browser.click('tr[data-tenant="alpha"] a')
    browser.wait(lambda: len(browser.find_all("tr[data-response]")) >= 3)
    turns = browser.find_all("tr[data-response]")
    shown = [row.get_attribute("data-response") for row in turns]
    assert set(shown) <= set(alpha.ids)  # every turn shown is one the agent ran, newest first
    assert [alpha.ids.index(i) for i in shown] == sorted((alpha.ids.index(i) for i in shown), reverse=True)
    for row in turns[:-1]:  # each continues the one below it, and its history came from the cache
        assert row.get_attribute("data-parent") in shown
        assert int(row.find_element("css selector", "[data-field=cached]").text) > 0
        assert "hit" in row.text
        assert row.find_element("css selector", "[data-field=ttft]").text.endswith("ms")
    running = browser.wait(lambda: browser.find("[data-running]").get_attribute("data-running"))
    browser.wait(lambda: browser.find_all(f'tr[data-response="{running}"]'))  # ended: in the timeline
    browser.screenshot("timeline")


def test_the_chain_tree_matches_the_responses_created(server: TetherServer, browser: Browser) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key=ALPHA, max_retries=0)
    root = client.responses.create(model=SCRIPTED, input="Plan a <b>trip</b>.")
    left = client.responses.create(model=SCRIPTED, input="By train.", previous_response_id=root.id)
    right = client.responses.create(model=SCRIPTED, input="By boat.", previous_response_id=root.id)
    leaf = client.responses.create(model=SCRIPTED, input="Which day?", previous_response_id=left.id)
    browser.log_in(ALPHA, f"/inspector/responses/{leaf.id}")
    nodes = {li.get_attribute("data-response"): li for li in browser.find_all("ul.tree li")}
    parents = {node: li.get_attribute("data-parent") for node, li in nodes.items()}
    assert parents == {root.id: "", left.id: root.id, right.id: root.id, leaf.id: left.id}
    assert nodes[leaf.id].get_attribute("aria-current") == "true"
    forks = {node for node, li in nodes.items() if "↳" in li.text}  # the branches drawn
    assert forks == {left.id, right.id}
    assert "Which day?" in browser.find("section.items").text
    browser.screenshot("chain")
    browser.click(f'li[data-response="{root.id}"] a')  # each node links to its stored items
    browser.wait(lambda: "Plan a <b>trip</b>." in browser.find("section.items").text)  # text, not HTML
    assert browser.find("ul.tree li[aria-current]").get_attribute("data-response") == root.id
    other = client.responses.create(
        model=SCRIPTED, input="Which day?", previous_response_id=right.id, instructions="Be brief."
    )
    browser.open("/inspector")  # the same turns, among the latest HTTP ones
    rows = {row.get_attribute("data-response"): row for row in browser.find_all("#http tr[data-response]")}
    assert {root.id, left.id, right.id, leaf.id} <= rows.keys()
    assert int(rows[leaf.id].find_element("css selector", "[data-field=cached]").text) > 0
    assert "hit" in rows[leaf.id].text
    assert "miss: input_changed" in rows[other.id].text  # its instructions differ from its parent's


def test_a_tenant_s_key_sees_its_own_tenant_only(
    server: TetherServer, agents: tuple[Agent, Agent], browser: Browser
) -> None:
    alpha, _ = agents
    alpha_http = openai.OpenAI(base_url=server.base_url, api_key=ALPHA, max_retries=0)
    alpha_turn = alpha_http.responses.create(model=SCRIPTED, input="Only mine.")
    browser.log_in(BETA)
    browser.wait(lambda: browser.find_all("tr[data-connection]"))
    assert {row.get_attribute("data-tenant") for row in browser.find_all("tr[data-connection]")} == {"beta"}
    assert "shown to admin keys" in browser.find("#engine").text
    assert alpha_turn.id not in browser.find("#http").text
    alpha_connection = _connection_of(server, alpha.ids[0])
    browser.open(f"/inspector/connections/{alpha_connection}")
    assert "No such connection" in browser.find("h1").text
    browser.open(f"/inspector/responses/{alpha.ids[0]}?tenant=alpha")  # the tenant named is ignored
    assert "No such stored response" in browser.find("h1").text
    browser.errors()  # the two 404s just read are the point


def test_the_playground_runs_turns_over_a_websocket(
    server: TetherServer, agents: tuple[Agent, Agent], browser: Browser
) -> None:
    browser.log_in(ALPHA)
    ids = []
    for text in ("Hello there!", "And again."):
        prompt = browser.find("#playground textarea")
        prompt.clear()
        prompt.send_keys(text)
        browser.click("#playground button[type=submit]")
        status = browser.wait(lambda: browser.find("#playground-status").text if "completed" in
                              browser.find("#playground-status").text else None)  # fmt: skip
        ids.append(status.split(":")[0])
    assert browser.find("#playground-output").text  # the answer, streamed into the page
    browser.screenshot("playground", "#playground")
    browser.click("#playground-links a")  # its turn, in its connection's timeline
    row = browser.wait(lambda: browser.find(f'tr[data-response="{ids[1]}"]'))
    assert row.get_attribute("data-parent") == ids[0]  # the second continued the first
    assert browser.find(f'tr[data-response="{ids[0]}"]')
    assert "Mozilla" in browser.find("dl.facts").text  # the browser's own connection


def test_the_engine_view_shows_the_local_model_s_memory(local_server: TetherServer, tmp_path: Path) -> None:
    client = local_server.client()
    first = client.responses.create(model=LOCAL, input="Name a colour.", max_output_tokens=8)
    client.responses.create(model=LOCAL, input="Another.", previous_response_id=first.id, max_output_tokens=8)
    with Browser(local_server.base_url, tmp_path) as browser:
        browser.open("/inspector")  # a server without keys: the inspector is as open as its API
        engine = browser.find("#engine")
        assert int(engine.find_element("css selector", "[data-field=resident]").text) >= 1
        budget = engine.find_element("css selector", "[data-field=snapshot-bytes] meter")
        assert int(float(budget.get_attribute("max"))) > 0
        assert "llama.cpp in this process" in engine.text and "reachable" in engine.text
        browser.screenshot("engine", "#engine")
        assert browser.errors() == []


def test_the_engine_view_says_when_an_upstream_engine_is_unreachable(tmp_path: Path) -> None:
    with (
        bench_engine(tmp_path / "engine.log") as engine,
        TetherServer(tmp_path / "tether.db", "--upstream", engine.base_url, model=None) as server,
        httpx.Client(base_url=server.base_url.removesuffix("/v1")) as http,
    ):
        up = http.get("/inspector/live/engine").text
        engine.stop()
        down = http.get("/inspector/live/engine").text
    assert f'data-engine="{engine.base_url}" class="up"' in up
    assert f'data-engine="{engine.base_url}" class="down"' in down and "unreachable" in down


def test_a_page_shows_the_newest_connections_and_counts_the_others(
    server: TetherServer, agents: tuple[Agent, Agent]
) -> None:
    sockets = [RawSocket(server, BETA) for _ in range(CONNECTIONS_SHOWN)]
    try:
        base = server.base_url.removesuffix("/v1")
        admin = {"Authorization": f"Bearer {ADMIN}"}
        page = httpx.get(f"{base}/inspector/live/connections", headers=admin).text
    finally:
        for socket in sockets:
            socket.ws.close()
    assert page.count("<tr data-connection=") == CONNECTIONS_SHOWN
    assert 'data-tenant="alpha"' not in page  # the agents' are the oldest
    assert "and 2 older, not shown" in page


def test_a_lane_says_how_long_its_oldest_queued_create_has_waited(server: TetherServer) -> None:
    waiting = re.compile(r'class="lane busy">default \+2 <small>\(\d+ ms\)</small>')
    base = server.base_url.removesuffix("/v1")
    with RawSocket(server, ALPHA) as socket, httpx.Client(base_url=base) as http:
        for _ in range(3):  # one runs (~0.5 s), two wait behind it on the default lane
            socket.create(input="Queue up.", store=False)
        pages = (http.get("/inspector/live/connections", headers={"Authorization": f"Bearer {ALPHA}"}).text
                 for _ in range(50))  # fmt: skip
        seen = next((page for page in pages if waiting.search(page)), None)
        for _ in range(3):
            socket.until_done()
    assert seen is not None  # before the first ended, the page showed the two waiting


def _connection_of(server: TetherServer, response_id: str) -> str:
    """The connection a turn ran on, as the admin's inspector finds it."""
    base = server.base_url.removesuffix("/v1")
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {ADMIN}"}) as http:
        found = http.get(f"/inspector/turns/{response_id}")
    assert found.status_code == 303
    return found.headers["location"].split("/")[-1].split("#")[0]
