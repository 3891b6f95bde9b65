"""Transport-independent execution of responses: chains, turns, the Responses resource."""
