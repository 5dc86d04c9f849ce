"""CLI subcommands: every module here defines NAME, HELP, `register(parser)` and `main(args) -> int`."""
