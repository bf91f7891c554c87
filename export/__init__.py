"""hipart-edge: export room (see docs/ and ARCHITECTURE.md §8)."""
