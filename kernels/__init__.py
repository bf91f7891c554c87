"""hipart-edge: kernels room (see docs/ and docs/ARCHITECTURE.md §8)."""
