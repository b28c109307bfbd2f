"""Recaptions a corpus with a trained bigvl captioner (CoCa, or CLIPS given the alt-text).

The same command as `bigvl recaption` (its flags: `python data/recaption.py --help`);
the code is bigvl/cli/recaption.py.
"""
import sys

from bigvl.cli.recaption import main

if __name__ == "__main__":
    sys.exit(main())
