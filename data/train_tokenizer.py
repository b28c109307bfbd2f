"""A sentencepiece tokenizer for converted shards: trained on their alt-texts and captions.

The same command as `bigvl train_tokenizer` (its flags: `python data/train_tokenizer.py --help`);
the code is bigvl/cli/train_tokenizer.py.
"""
import sys

from bigvl.cli.train_tokenizer import main

if __name__ == "__main__":
    sys.exit(main())
