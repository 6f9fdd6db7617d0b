"""Tasks of Reward past actions runs."""
