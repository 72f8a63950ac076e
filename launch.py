"""Start the playground: the same as `python -m playground serve`."""

import sys

from playground.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
