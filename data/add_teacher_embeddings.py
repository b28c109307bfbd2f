"""Adds a trained teacher's image and text embeddings to training shards (MobileCLIP's reinforced data).

The same command as `bigvl add_teacher_embeddings` (its flags: `python data/add_teacher_embeddings.py --help`);
the code is bigvl/cli/add_teacher_embeddings.py.
"""
import sys

from bigvl.cli.add_teacher_embeddings import main

if __name__ == "__main__":
    sys.exit(main())
