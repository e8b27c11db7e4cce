"""Command line: argument parsing and messages only (the top layer)."""
