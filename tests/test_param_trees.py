"""Param trees are frozen: every model kind keeps its param paths, shapes, dtypes and logical axis names.

Stored checkpoints restore by path and shape, so a refactor of the models package must leave
them all unchanged. The reference, tests/fixtures/param_trees.json, was written by the code
as it was *before* the models refactor (commit 2e3709d), by this file run as a script:

    PYTHONPATH=<checkout of that commit> python tests/test_param_trees.py --write

Cases: every config under configs/ at the time (default argument), demo's SigLIP variant, the options
that add or remove params (MAP pooling in either tower, no projection, projection bias,
bfloat16 params) and the tiny captioners of the captioner tests.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

FIXTURE = Path(__file__).parent / "fixtures" / "param_trees.json"
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


# The demo family's towers when the reference was written. Since issue 20 configs/demo.py (and the
# configs built on it) trains smaller towers on 32-px images; a model change is not a refactor, so
# the frozen cases keep the towers the reference was written with (as configs/demo_classic.py has).
DEMO_FAMILY = ("demo.py", "recipe_demo.py", "coca_demo.py", "clips_demo.py")
CLASSIC_TOWERS = {"image.image_size": 64, "image.patch_size": 8, "image.width": 128, "image.depth": 4,
                  "image.mlp_dim": 512, "text.width": 128, "text.mlp_dim": 512}
CLASSIC_TEXT_DEPTH = {"coca_demo.py": 2}  # CoCa's own unimodal half; the others kept the demo's 4


def _config(spec: str):
    """A config's model section in the unrolled layout (the one stored checkpoints have; configs that
    scan their layers, e.g. clips_l14, store `blocks` stacked instead: tests/test_scan_layers.py)."""
    from bigvl.config import load_config
    path, _, arg = spec.partition(":")
    model = load_config(str(CONFIGS / path) + (f":{arg}" if arg else "")).unlock().model
    model.scan_layers = False
    if path in DEMO_FAMILY:
        for key, value in {**CLASSIC_TOWERS, "text.depth": CLASSIC_TEXT_DEPTH.get(path, 4)}.items():
            section, leaf = key.split(".")
            model[section][leaf] = value
    return model


def _demo_with(**updates):
    def make():
        m = _config("demo.py")
        for key, value in updates.items():
            section, _, leaf = key.rpartition(".")
            (m[section] if section else m)[leaf] = value
        return m
    return make


def _tiny_captioner(kind: str, **updates):
    def make():
        from tests.helpers.captioner_models import tiny_model_config
        m = tiny_model_config(kind)
        for key, value in updates.items():
            section, _, leaf = key.rpartition(".")
            (m[section] if section else m)[leaf] = value
        return m
    return make


# The configs that existed when the reference was written; a config added later (e.g. own_data.py)
# has no old code to be checked against, and test_config.py builds every config.
FROZEN_CONFIGS = ("clip_b16.py", "clips_demo.py", "clips_l14.py", "coca_b16.py", "coca_demo.py", "demo.py",
                  "recipe_b16.py", "recipe_demo.py", "siglip_b16.py")

CASES = {
    **{f"configs/{name}": (lambda name=name: _config(name)) for name in FROZEN_CONFIGS},
    "configs/demo.py:sigmoid": lambda: _config("demo.py:sigmoid"),
    "demo+image_pool_map": _demo_with(**{"image.pool": "map"}),
    "demo+text_pool_map_bidirectional": _demo_with(**{"text.pool": "map", "text.causal": False}),
    "demo+no_projections": _demo_with(**{"image.proj": False, "text.proj": False}),
    "demo+projection_bias": _demo_with(**{"image.proj_bias": True, "text.proj_bias": True}),
    "demo+bfloat16_params": _demo_with(param_dtype="bfloat16", dtype="bfloat16"),
    "tiny_coca": _tiny_captioner("coca"),
    "tiny_clips": _tiny_captioner("clips"),
    "tiny_coca+image_pool_map": _tiny_captioner("coca", **{"image.pool": "map"}),
}


def param_tree(model_cfg) -> dict[str, dict]:
    """`config.model` → {'a/b/kernel': {shape, dtype, names}} of its init params (by shape, nothing allocated)."""
    from bigvl.models import build_model
    model = build_model(model_cfg)
    size, length = model_cfg.image.image_size, model_cfg.text.context_length
    images, tokens = jnp.zeros((1, size, size, 3), jnp.uint8), jnp.zeros((1, length), jnp.int32)
    boxed = jax.eval_shape(lambda rng: model.init(rng, images, tokens)["params"], jax.random.key(0))
    leaves = jax.tree_util.tree_flatten_with_path(boxed, is_leaf=lambda x: isinstance(x, nn.Partitioned))[0]
    tree = {}
    for path, leaf in leaves:
        names = list(leaf.names) if isinstance(leaf, nn.Partitioned) else None
        value = leaf.value if isinstance(leaf, nn.Partitioned) else leaf
        key = "/".join(str(getattr(k, "key", k)) for k in path)
        tree[key] = {"shape": list(value.shape), "dtype": str(value.dtype), "names": names}
    return tree


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(FIXTURE.read_text())


@pytest.mark.parametrize("case", sorted(CASES))
def test_param_tree_unchanged(case, reference):
    assert case in reference, f"no reference for {case!r}: cases may be added only with a reference from old code"
    tree, want = param_tree(CASES[case]()), reference[case]
    assert sorted(tree) == sorted(want), (
        f"paths differ: missing {sorted(set(want) - set(tree))}, new {sorted(set(tree) - set(want))}")
    for path in want:
        assert (tree[path]["shape"], tree[path]["dtype"]) == (want[path]["shape"], want[path]["dtype"]), path
        assert tree[path]["names"] == want[path]["names"], f"{path}: logical axis names changed"


def test_reference_covers_every_case(reference):
    """The fixture holds exactly the cases above (none silently dropped)."""
    assert sorted(reference) == sorted(CASES)


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/test_param_trees.py --write   (only from the pre-refactor code)")
    out = {case: param_tree(make()) for case, make in sorted(CASES.items())}
    FIXTURE.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"wrote {len(out)} cases, {sum(map(len, out.values()))} params to {FIXTURE}")
