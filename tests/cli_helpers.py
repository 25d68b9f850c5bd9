"""Running the `whyrec` command in-process, as the CLI tests do."""

from __future__ import annotations

from whyrec.cli import main


def exit_code(argv: list[str]) -> int:
    """The exit code `whyrec ARGV` gives (typer ends every command with SystemExit)."""
    try:
        main(list(argv))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def run(capsys, *args: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of `whyrec ARGS`."""
    code = exit_code(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err
