"""CLI commands that live in their own modules; `whyrec.cli` registers them."""
