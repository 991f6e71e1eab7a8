"""The `ironlayer` command line; `main` is the console script entry point."""

from shared_core.cli.main import main

__all__ = ["main"]
