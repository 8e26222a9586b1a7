"""Endpoints (agents): enrollment tokens, enrollment, heartbeats, online/offline state, revocation."""
