"""The command line: what each ``syncd`` subcommand runs."""
