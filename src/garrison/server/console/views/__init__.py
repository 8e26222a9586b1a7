"""One module of console pages per domain."""
