"""``python -m syncd``: the same command line as ``syncd``."""

import sys

from syncd.commands.cli import main

if __name__ == "__main__":  # importing the module (as tools that walk the package do) runs nothing
    sys.exit(main())
