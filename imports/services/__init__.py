"""Imports services: CSV parsing, checking and applying (one module per concern)."""
