"""hipart-edge: kernels room (see docs/ and ARCHITECTURE.md §8)."""
