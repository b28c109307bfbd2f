"""bigvl: JAX-native pretraining of vision-language models on recaptioned data.

Notebook use: `bigvl.load(workdir)`, then `encode_images`, `encode_texts`,
`zero_shot_classify`, `retrieve`, `patch_similarity`, `caption` (see `bigvl.api`); figures
in `bigvl.plots` (matplotlib). Training: `python -m bigvl.main`.
"""
__version__ = "0.1.0"

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
