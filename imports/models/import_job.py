"""CSV upload jobs."""
