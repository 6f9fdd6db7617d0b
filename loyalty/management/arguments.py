"""Argument types shared by the management commands."""

import argparse


def positive_int(text: str) -> int:
    """A whole number of 1 or more (a size, a count, a limit): anything else is refused by the command line parser
    with the value named, before the command starts."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not 1 or more")
    return value
