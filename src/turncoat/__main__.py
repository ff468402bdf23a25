import sys

from turncoat.cli import main

if __name__ == "__main__":  # not when a spawned stage process imports this module as its parent's main
    sys.exit(main())
