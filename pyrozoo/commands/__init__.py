"""``pyrozoo`` subcommands: each module defines ``add_command(subparsers)``."""
