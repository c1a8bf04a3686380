"""argparse types and arguments shared by the subcommands: bad values become argparse errors,
not tracebacks."""

from __future__ import annotations

import argparse

from minicnn.atomic import check_folder_writable, check_writable


def int_at_least(minimum: int, what: str):
    """An argparse type accepting integers >= minimum; `what` names the expectation."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


positive_int = int_at_least(1, "a positive integer")
seed = int_at_least(0, "a non-negative integer")


def add_train_samples(parser: argparse.ArgumentParser) -> None:
    """--train-samples N: the seed's 'first 20,000 training images' (train and figures)."""
    parser.add_argument(
        "--train-samples",
        type=positive_int,
        default=20000,
        metavar="N",
        help="train on the first N training images, as the seed does "
        "(default: 20000; fewer if the data has fewer)",
    )


def check_output_file(parser, option: str, path) -> None:
    """A usage error now (exit 2) if `path` cannot be written, rather than after training."""
    if path is None:
        return
    try:
        check_writable(path, f"argument {option}:")
    except OSError as e:
        parser.error(str(e))


def check_output_folder(parser, option: str, path) -> None:
    """A usage error now (exit 2) if files cannot be written in folder `path` (made if need be)."""
    if path is None:
        return
    try:
        check_folder_writable(path, f"argument {option}:")
    except OSError as e:
        parser.error(str(e))
