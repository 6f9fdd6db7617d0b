"""\"Reward past actions\" runs."""
