"""Sharing what the fleet found with outside parties: STIX 2.1 indicator bundles for threat-sharing platforms."""
