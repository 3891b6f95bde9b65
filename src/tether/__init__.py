"""Tether: the OpenAI Responses API over HTTP and WebSocket, in front of a local or upstream model."""

__version__ = "0.1.0"
