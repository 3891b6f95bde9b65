"""The wire format of the Responses API, with no I/O.

Everything that knows a JSON shape lives here: request parsing and validation (`request`), input
and output items (`items`, `tools`), the Response object (`response`), stream events and their
SSE framing (`events`), WebSocket client events (`client_events`) and handshake headers
(`handshake`), the bodies of the resource endpoints (`resources`), and the error catalogue
(`errors`). Nothing in this package imports asyncio, a backend, a store or a clock.
"""
