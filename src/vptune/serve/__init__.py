"""Serving: one backbone answering many tasks, and the HTTP service around it."""
