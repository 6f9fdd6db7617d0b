"""Tasks of CSV upload jobs."""
