"""`python -m bigvl` (and the `bigvl` console script): lists the commands, or runs one (bigvl/cli/)."""
import sys

from bigvl.cli import main

if __name__ == "__main__":
    sys.exit(main())
