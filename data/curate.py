"""Curates training shards: MetaCLIP balancing, score filtering, de-duplication (see bigvl.data.curate).

The same command as `bigvl curate` (its flags: `python data/curate.py --help`);
the code is bigvl/cli/curate.py.
"""
import sys

from bigvl.cli.curate import main

if __name__ == "__main__":
    sys.exit(main())
