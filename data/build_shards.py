"""Downloaded images + recaption tables → bigvl ArrayRecord shards and DIR/manifest.json.

The same command as `bigvl build_shards` (its flags: `python data/build_shards.py --help`);
the code is bigvl/cli/build_shards.py.
"""
import sys

from bigvl.cli.build_shards import main

if __name__ == "__main__":
    sys.exit(main())
