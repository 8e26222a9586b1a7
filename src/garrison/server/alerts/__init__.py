"""Alerts: per-unit rules that watch a subtree and send grouped, rate-limited messages by e-mail and webhook."""
