"""Detections reported by agents: idempotent ingestion and triage."""
