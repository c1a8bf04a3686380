"""``python -m reference`` is ``minicnn parity``."""

import sys

from minicnn.cli import main

if __name__ == "__main__":
    sys.exit(main(["parity", *sys.argv[1:]]))
