"""CLI subcommands: each module here is one `longlab NAME` plugin (NAME, HELP, `register(parser)`,
`main(args) -> exit status`; see `longlab.plugins`)."""
