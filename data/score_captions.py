"""Stores the CLIP score (raw cosine of image and text embeddings) of each text of every record.

The same command as `bigvl score_captions` (its flags: `python data/score_captions.py --help`);
the code is bigvl/cli/score_captions.py.
"""
import sys

from bigvl.cli.score_captions import main

if __name__ == "__main__":
    sys.exit(main())
