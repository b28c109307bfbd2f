"""Experiment configs, installed with the library as the package `bigvl.configs`.

Each module's `get_config(arg)` returns a ConfigDict; `python -m bigvl.main --config NAME[:ARG]`
loads one by name (`bigvl.config.list_configs()` lists them), `--config configs/NAME.py[:ARG]`
by path from a clone. Nothing in the library imports these modules.
"""
