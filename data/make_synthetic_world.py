"""Builds the synthetic recaptioned world (see `bigvl.data.world`).

The same command as `bigvl make_synthetic_world` (its flags: `python data/make_synthetic_world.py --help`);
the code is bigvl/cli/make_synthetic_world.py.
"""
import sys

from bigvl.cli.make_synthetic_world import main

if __name__ == "__main__":
    sys.exit(main())
