"""hipart-edge: export room (see docs/ and docs/ARCHITECTURE.md §8)."""
