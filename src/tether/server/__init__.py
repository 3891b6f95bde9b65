"""Transports: HTTP (JSON and SSE) now, WebSocket next; auth and request ids around both."""
