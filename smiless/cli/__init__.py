"""The `smiless` command line."""
