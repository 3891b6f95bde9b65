"""Persistence of `store: true` responses."""
