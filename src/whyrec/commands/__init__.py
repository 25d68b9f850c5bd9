"""CLI commands that live outside cli.py, each a typer-annotated function registered there."""
