"""Admin of Reward past actions runs."""
