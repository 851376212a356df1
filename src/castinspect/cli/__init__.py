"""The ``castinspect`` command: the Typer app with every command registered."""

# Imported for their commands, in the order ``--help`` lists them.
from castinspect.cli import models, judging, datasets, station, loop, lab  # noqa: F401, I001
from castinspect.cli.app import app

__all__ = ["app"]
