"""WiSE-FT: the interpolation against a float64 reference, the architecture check, the outputs written."""
import types

import jax.numpy as jnp
import numpy as np
import pytest

from bigvl.cli.wise_ft import check_same_architecture, interpolate, parse_alphas, write_outputs
from bigvl.config import base_config


def _run(params, **model):
    config = base_config()
    config.model.update(model)
    return types.SimpleNamespace(config=config, params=params)


def test_interpolation_matches_float64_and_keeps_dtypes():
    rng = np.random.default_rng(0)
    a64, b64 = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    theta0 = {"w": jnp.asarray(a64, jnp.float32), "h": jnp.asarray(a64, jnp.bfloat16)}
    theta1 = {"w": jnp.asarray(b64, jnp.float32), "h": jnp.asarray(b64, jnp.bfloat16)}
    for alpha in (0.0, 0.3, 1.0):
        mixed = interpolate(theta0, theta1, alpha)
        np.testing.assert_allclose(mixed["w"], (1 - alpha) * a64 + alpha * b64, atol=1e-6)
        assert mixed["h"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(interpolate(theta0, theta1, 0.0)["w"], theta0["w"])  # the ends exactly
    np.testing.assert_array_equal(interpolate(theta0, theta1, 1.0)["w"], theta1["w"])


def test_another_architecture_is_named():
    params = {"text": {"pos_embedding": np.zeros((77, 8))}}
    check_same_architecture(_run(params), _run(params))
    with pytest.raises(ValueError, match="model.activation = 'quick_gelu'"):
        check_same_architecture(_run(params), _run(params, activation="quick_gelu"))
    with pytest.raises(ValueError, match=r"'text/pos_embedding' is \(77, 8\) in --zero_shot but \(248, 8\)"):
        check_same_architecture(_run(params), _run({"text": {"pos_embedding": np.zeros((248, 8))}}))


def test_outputs_and_alphas(tmp_path):
    rows = [{"alpha": a, "zeroshot/top1": 0.5 + a / 4, "retrieval/i2t_r1": 0.3} for a in parse_alphas("0,0.5,1")]
    paths = write_outputs(rows, str(tmp_path))
    assert [p.rsplit(".", 1)[1] for p in paths] == ["csv", "md", "png"]
    assert open(paths[0]).read().splitlines()[2] == "0.5,0.625,0.3"
    with pytest.raises(ValueError, match="--alphas"):
        parse_alphas("0,half")
