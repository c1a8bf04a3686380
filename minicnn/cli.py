"""The `minicnn` command: one subcommand per module in minicnn/commands/ (or reference/).

Each subcommand module defines ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int`` (the exit status). Modules are imported only when their command runs, so
`minicnn train` never imports TensorFlow.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "train": "minicnn.commands.train",
    "parity": "reference.cli",
    "figures": "minicnn.commands.figures",
    "gradcheck": "minicnn.commands.gradcheck",
    "explain": "minicnn.commands.explain",
}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog="minicnn", description="minicnn: a CNN from scratch, "
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
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
