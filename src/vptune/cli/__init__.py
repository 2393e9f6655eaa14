"""The `vptune` command line: one module per subcommand."""
