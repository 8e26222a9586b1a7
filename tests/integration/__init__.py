"""Tests across parts: the agent against the server, and (later) the browser against the console."""
