"""Command line: argument parsing and messages only (layer 5)."""
