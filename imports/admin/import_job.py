"""Admin of CSV upload jobs."""
