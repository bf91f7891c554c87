"""hipart-edge: edge room (see docs/ and ARCHITECTURE.md §8)."""
