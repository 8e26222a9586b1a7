"""Garrison: anti-malware scanning, central management and compliance reporting."""

__version__ = "0.1.0"
