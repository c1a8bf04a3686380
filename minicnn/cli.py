"""The `minicnn` command: one subcommand per module in minicnn/commands/ (or reference/).

Each subcommand module defines ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int`` (the exit status). Modules are imported only when their command runs, so
`minicnn train` never imports TensorFlow.

A failure is one line on stderr, ``minicnn <command>: error: <what went wrong>``, and exit
status 1 (2 for a usage error, 130 for Ctrl-C): no traceback. MINICNN_TRACEBACK=1 shows it.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

COMMANDS = {
    "train": "minicnn.commands.train",
    "parity": "reference.cli",
    "figures": "minicnn.commands.figures",
    "gradcheck": "minicnn.commands.gradcheck",
    "explain": "minicnn.commands.explain",
}


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit status 2), like every other failure."""

    def error(self, message):
        text = " ".join(message.split())
        self.exit(2, f"{self.prog}: error: {text} (see `{self.prog} --help`)\n")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = OneLineParser(prog="minicnn", description="minicnn: a CNN from scratch, "
                           "checked against Keras.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Only the chosen command's module is imported (the others may need heavy dependencies).
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, module in COMMANDS.items():
        if name == chosen:
            mod = importlib.import_module(module)
            p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
            mod.add_arguments(p)
            p.set_defaults(_run=mod.run)
        else:
            sub.add_parser(name, help=f"see `minicnn {name} --help`")
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print(f"minicnn {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if os.environ.get("MINICNN_TRACEBACK"):
            raise
        print(f"minicnn {args.command}: {error_line(e)}", file=sys.stderr)
        return 1


# What a user can cause (bad data, a bad file, a full disk, a diverging run): their message is
# the whole story. Anything else is a bug in minicnn and says so.
_EXPECTED = (ValueError, TypeError, OSError, FloatingPointError, MemoryError, LookupError)


def error_line(e: BaseException) -> str:
    """'error: <message>' on one line (an internal error also names its type)."""
    text = " ".join(str(e).split()) or type(e).__name__
    if isinstance(e, _EXPECTED):
        return f"error: {text}"
    return (f"internal error: {type(e).__name__}: {text} (a bug in minicnn; set "
            f"MINICNN_TRACEBACK=1 to see where)")


if __name__ == "__main__":
    sys.exit(main())
