"""Command-line entry points of the hipart package (thin: parse, call the library, print)."""
