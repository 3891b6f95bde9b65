"""The wire format of the Responses API, with no I/O.

Everything that knows a JSON shape lives here: request parsing and validation, input and output
items, the Response object, stream events and the error catalogue. Nothing in this package imports
asyncio, a backend, a store or a clock.
"""
