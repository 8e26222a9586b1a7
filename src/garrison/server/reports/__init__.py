"""Reporting: statistics of a unit subtree over a period (``statistics``), their REST API and exports."""
