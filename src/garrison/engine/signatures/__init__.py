"""Signature databases: one parser per on-disk format, and the database that compiles them for scanning."""
