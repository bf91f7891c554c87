"""hipart-edge: calib room (see docs/ and ARCHITECTURE.md §8)."""
