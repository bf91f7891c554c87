"""hipart-edge: calib room (see docs/ and docs/ARCHITECTURE.md §8)."""
