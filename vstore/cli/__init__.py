"""The `vstore` command: one module per subcommand; each parses arguments and formats output."""
