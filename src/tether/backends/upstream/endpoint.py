"""One upstream engine: a pooled keep-alive HTTP client, and whether the engine answered lately.

Every way a request can go wrong becomes a `BackendError` whose public message tells the client
what happened (not where the engine lives). A transport failure marks the engine unreachable, and
the next request first checks it is back (`ensure_reachable`), so that while it is down clients
get a 503 they can retry instead of a response that fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Mapping, MutableMapping
from typing import Any

import httpx
import orjson

from tether.backends.base import BackendError, BackendUnavailable
from tether.backends.upstream.chunks import DONE, EndedEarly, parse_line
from tether.config import Upstream
from tether.tracing import outgoing

log = logging.getLogger(__name__)
Json = Mapping[str, Any]
UNREACHABLE = "The upstream engine serving this model is not reachable; retry shortly."


class Endpoint:
    def __init__(self, base_url: str, settings: Upstream) -> None:
        self.base_url = base_url
        self.settings = settings
        self.reachable = True
        self.known = False  # whether its model list has been read
        # vLLM can keep each tenant's prefix cache apart (`cache_salt`); learnt from its model list.
        self.salts_prefix_cache = False
        url = httpx.URL(base_url)
        self._url = url.copy_with(port=url.port or (443 if url.scheme == "https" else 80))
        key = settings.api_key
        headers = {"Authorization": f"Bearer {key.get_secret_value()}"} if key else {}
        self._client = httpx.AsyncClient(
            base_url=base_url,
            headers=headers,
            # The read timeout is between two bytes of a response, the engine's prefill included.
            timeout=httpx.Timeout(settings.read_timeout_s, connect=settings.connect_timeout_s),
            # One connection per streaming response; engines queue what they cannot run.
            limits=httpx.Limits(max_connections=settings.max_connections, max_keepalive_connections=64),
        )

    async def models(self) -> list[str]:
        """The ids the engine serves (`GET /models`), and what kind of engine it is."""
        try:
            # The read timeout too: an engine busy generating may answer late, and it is up.
            response = await self._client.get("/models")
        except httpx.HTTPError as exc:
            raise self._lost(exc) from exc
        self.reachable = True
        if response.status_code >= 400:
            raise _refused(response.status_code, response.content)
        listed = _listed(response)
        self.salts_prefix_cache = any(model.get("owned_by") == "vllm" for model in listed)
        self.known = True
        return [str(model["id"]) for model in listed if "id" in model]

    async def ensure_reachable(self) -> None:
        """While the engine is known to be down, check that it listens again before sending it work."""
        if self.reachable:
            return
        try:
            await self.probe()
        except BackendUnavailable as exc:
            log.warning("upstream %s still unreachable: %s", self.base_url, exc)
            raise
        self.reachable = True
        if not self.known:  # down since Tether started: learn once what the engine is
            with contextlib.suppress(BackendError):
                await self.models()

    async def probe(self) -> None:
        """Whether the engine listens: a TCP connect, not a request. llama-cpp-python ends the stream
        it is generating whenever another request arrives (its `interrupt_requests`, on by
        default), `GET /models` included, so a check by request would cut another client's
        response short."""
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(self._url.host, self._url.port), self.settings.connect_timeout_s
            )
        except (OSError, TimeoutError) as exc:
            raise BackendUnavailable(f"{type(exc).__name__}: {exc}", public=UNREACHABLE) from exc
        writer.close()

    def cache_salt(self, cache_scope: str) -> str | None:
        """What keeps `cache_scope`'s prefix cache apart on this engine, if it can: a digest, so
        tenant names stay out of the engine's logs."""
        if not self.salts_prefix_cache:
            return None
        return hashlib.sha256(f"tether cache scope {cache_scope}".encode()).hexdigest()[:32]

    async def complete(self, body: bytes, session_key: str) -> Json:
        """A non-streaming chat completion."""
        try:
            response = await self._client.post(
                "/chat/completions", content=body, headers=_headers(session_key)
            )
        except httpx.HTTPError as exc:
            raise self._lost(exc) from exc
        if response.status_code >= 400:
            raise _refused(response.status_code, response.content)
        completion = orjson.loads(response.content)
        if not isinstance(completion, Mapping):
            raise BackendError(f"upstream answered with a non-object: {response.content[:200]!r}")
        return completion

    async def stream(self, body: bytes, session_key: str) -> AsyncIterator[Json]:
        """A streaming chat completion's chunks, until `[DONE]` or the end of the body."""
        request = self._client.build_request(
            "POST", "/chat/completions", content=body, headers=_headers(session_key)
        )
        try:
            response = await self._client.send(request, stream=True)
            try:
                if response.status_code >= 400:
                    raise _refused(response.status_code, await response.aread())
                async for line in response.aiter_lines():
                    chunk = parse_line(line)
                    if chunk is DONE:
                        return
                    if isinstance(chunk, Mapping):
                        yield chunk
            finally:
                await response.aclose()  # closing mid-stream is how the engine learns to stop
        except httpx.HTTPError as exc:
            raise self._lost(exc) from exc

    def _lost(self, exc: httpx.HTTPError) -> BackendError:
        self.reachable = False
        log.warning("upstream %s: %s: %s", self.base_url, type(exc).__name__, exc)
        reason = f"{type(exc).__name__}: {exc}".rstrip(": ")
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            return BackendUnavailable(reason, public=UNREACHABLE)
        if isinstance(exc, httpx.ReadTimeout):
            public = f"The upstream engine sent nothing for {self.settings.read_timeout_s:g} s."
            return BackendError(reason, public=public)
        return EndedEarly(reason, public="The upstream engine closed the connection before it finished.")

    async def aclose(self) -> None:
        await self._client.aclose()


def _listed(response: httpx.Response) -> list[Mapping[str, Any]]:
    """The model objects of a `GET /models` answer (none if it is not the OpenAI shape)."""
    try:
        data = response.json().get("data")
    except (ValueError, AttributeError):
        return []
    return [model for model in data or () if isinstance(model, Mapping)]


def _headers(session_key: str) -> MutableMapping[str, str]:
    # vllm-router's `consistent_hash` policy reads this header first: one chain, one replica.
    # `traceparent`: the engine's own spans join the turn's trace (`tracing.py`).
    return outgoing({"Content-Type": "application/json", "X-Session-ID": session_key})


def _refused(status: int, content: bytes) -> BackendError:
    message = _error_message(content)
    return BackendError(
        f"upstream answered {status}: {message}",
        public=f"The upstream engine refused the request (HTTP {status}): {message}",
    )


def _error_message(content: bytes) -> str:
    """The engine's own words: `error.message` (OpenAI shape), `detail` (FastAPI), or the text."""
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        return content.decode("utf-8", "replace")[:500]
    if isinstance(body, Mapping):
        error = body.get("error")
        if isinstance(error, Mapping) and error.get("message"):
            return str(error["message"])[:500]
        if isinstance(error, str):
            return error[:500]
        if body.get("detail"):
            return str(body["detail"])[:500]
    return content.decode("utf-8", "replace")[:500]
