"""Subcommands of the ``breakhis`` command line; each module has ``main(argv: list[str] | None) -> int``."""
