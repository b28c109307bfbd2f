"""bigvl: JAX-native pretraining of vision-language models on recaptioned data.

Notebook use: `bigvl.load(workdir)`, then `encode_images`, `encode_texts`,
`zero_shot_classify`, `retrieve` (see `bigvl.api`). Training: `python -m bigvl.main`.
"""
__version__ = "0.1.0"

_API = ("load", "encode_images", "encode_texts", "zero_shot_classify", "retrieve")


def __getattr__(name):  # the API imports JAX; keep `import bigvl.<module>` light
    if name in _API:
        from bigvl import api
        return getattr(api, name)
    raise AttributeError(f"module 'bigvl' has no attribute {name!r}")


__all__ = list(_API)
