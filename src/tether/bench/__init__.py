"""`tether bench`: client-side benchmarks of a running server (or one it starts itself)."""
