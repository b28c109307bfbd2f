"""Configs: the schema, loading `NAME[:ARG]` or `path.py[:ARG]`, the arg grammar, overrides, checks.

    schema.py     base_config() (every key bigvl reads, with its default), check_schema
    loading.py    load_config, load_config_json, list_configs (the configs shipped as bigvl.configs)
    args.py       parse_config_args: `:flag,key=value` after a config's name
    overrides.py  split_overrides, apply_overrides: `--config.key=value`, typed by the old value
    checks.py     validate, check_contradictions
    errors.py     ConfigError

Every experiment config starts from `base_config()` and changes values. The config is then
locked: a key that is not in the schema (a typo in a config file or on the command line) is
a one-line error with the nearest valid key, before any compilation.
"""
from bigvl.config.args import ConfigArgs, parse_config_args
from bigvl.config.checks import MU_DTYPES, SCHEDULES, check_contradictions, validate
from bigvl.config.errors import ConfigError
from bigvl.config.loading import config_names, list_configs, load_config, load_config_json
from bigvl.config.overrides import apply_overrides, split_overrides
from bigvl.config.schema import base_config, check_schema

__all__ = ["ConfigArgs", "ConfigError", "MU_DTYPES", "SCHEDULES", "apply_overrides", "base_config",
           "check_contradictions", "check_schema", "config_names", "list_configs", "load_config",
           "load_config_json", "parse_config_args", "split_overrides", "validate"]
