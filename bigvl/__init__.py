"""bigvl: JAX-native pretraining of vision-language models on recaptioned data.

Notebook use: `bigvl.load(workdir)`, then `encode_images`, `encode_texts`,
`zero_shot_classify`, `retrieve`, `patch_similarity`, `caption` (see `bigvl.api`); figures
in `bigvl.plots` (matplotlib). The commands: `bigvl` (or `python -m bigvl`) lists them.

Imported before jax, bigvl picks JAX's platform quietly: with libtpu installed and no TPU
attached, JAX_PLATFORMS is set to this machine's platforms so that JAX does not try (and
loudly fail) to start a TPU (bigvl/parallel/process.py; a JAX_PLATFORMS you set is kept).
"""
import sys as _sys

from bigvl.parallel.process import choose_jax_platform as _choose_jax_platform

__version__ = "0.1.0"

if "jax" not in _sys.modules:  # JAX reads JAX_PLATFORMS when it is imported
    _choose_jax_platform()

_API = ("load", "encode_images", "encode_texts", "zero_shot_classify", "retrieve", "patch_similarity", "caption")


def __getattr__(name):  # the API imports JAX; keep `import bigvl.<module>` light
    if name in _API:
        from bigvl import api
        return getattr(api, name)
    if name == "plots":  # matplotlib: loaded on first use of bigvl.plots
        import importlib
        return importlib.import_module("bigvl.plots")
    raise AttributeError(f"module 'bigvl' has no attribute {name!r}")


__all__ = list(_API)
