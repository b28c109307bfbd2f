"""Mesh construction, sharding rules, logical shardings and host batches on 8 simulated devices."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from jax.sharding import AxisType
from jax.sharding import PartitionSpec as P

from bigvl.parallel import mesh as sharding


@pytest.mark.parametrize("cfg, want", [
    ({"data": -1, "fsdp": 1, "tensor": 1}, (8, 1, 1)),
    ({"data": 2, "fsdp": -1}, (2, 4, 1)),
    ({"data": 2, "fsdp": 2, "tensor": 2}, (2, 2, 2)),
    ({"fsdp": -1, "tensor": 2}, (1, 4, 2)),
])
def test_make_mesh_shapes(cfg, want):
    mesh = sharding.make_mesh(cfg)
    assert mesh.axis_names == sharding.MESH_AXES
    assert tuple(mesh.shape.values()) == want
    assert mesh.axis_types == (AxisType.Auto,) * 3
    assert sorted(d.id for d in mesh.devices.flat) == list(range(8))


def test_make_mesh_accepts_config_dict_and_device_subset():
    mesh = sharding.make_mesh(ml_collections.ConfigDict({"data": -1}), devices=jax.devices()[:4])
    assert tuple(mesh.shape.values()) == (4, 1, 1)


@pytest.mark.parametrize("cfg, message", [
    ({"data": 3, "fsdp": 1, "tensor": 1},
     "mesh data=3 x fsdp=1 x tensor=1 = 3 does not equal the 8 available devices"),
    ({"data": 16}, "= 16 does not equal the 8 available devices"),
    ({"data": -1, "tensor": 3}, "do not divide the 8 available devices"),
    ({"data": 8, "fdsp": 1}, "mesh axis 'fdsp' unknown; axes are data, fsdp, tensor"),
    ({"data": -1, "fsdp": -1}, "more than one -1 axis (data, fsdp)"),
    ({"data": 0, "fsdp": -1}, "axis 'data' must be a positive size or -1"),
])
def test_make_mesh_errors(cfg, message):
    with pytest.raises(ValueError) as error:
        sharding.make_mesh(cfg)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_presets_resolve_on_8_devices():
    shapes = {name: tuple(sharding.make_mesh(preset["mesh"]).shape.values())
              for name, preset in sharding.PRESETS.items()}
    assert shapes == {"dp": (8, 1, 1), "fsdp": (1, 8, 1), "fsdp_tp": (1, 4, 2)}


def test_rules_from_config_round_trips_config_lists():
    config = ml_collections.ConfigDict({"rules": [list(rule) for rule in sharding.DEFAULT_RULES]})
    assert sharding.rules_from_config(config.rules) == sharding.DEFAULT_RULES
    assert sharding.rules_from_config([["batch", ["data", "fsdp"]], ["kv", None]]) == (
        ("batch", ("data", "fsdp")), ("kv", None))


@pytest.mark.parametrize("rules, message", [
    ([["embed", "fdsp"]], "sharding rule 'embed': mesh axis 'fdsp' unknown"),
    ([["batch", ["data", "model"]]], "mesh axis 'model' unknown"),
    ([["embed"]], "must be [logical_name, mesh_axis"),
    (["embed"], "must be [logical_name, mesh_axis"),
])
def test_rules_from_config_errors(rules, message):
    with pytest.raises(ValueError) as error:
        sharding.rules_from_config(rules)
    assert message in str(error.value)


class ToyBlock(nn.Module):
    """An MLP and a per-head projection whose params carry logical names, plus one param without."""

    @nn.compact
    def __call__(self, x):  # [B, 16]
        init = nn.initializers.lecun_normal()
        h = nn.Dense(32, kernel_init=nn.with_logical_partitioning(init, ("embed", "mlp")),
                     bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("mlp",)))(x)
        x = nn.Dense(16, kernel_init=nn.with_logical_partitioning(init, ("mlp", "embed")), use_bias=False)(h)
        heads_init = nn.with_logical_partitioning(init, ("embed", "heads", "kv"))
        heads = nn.DenseGeneral((2, 8), kernel_init=heads_init, use_bias=False)(x)
        return heads * self.param("scale", nn.initializers.ones, ())


@pytest.mark.parametrize("mesh_cfg", [{"data": 8}, {"data": 2, "fsdp": 2, "tensor": 2}])
def test_logical_shardings_of_toy_module(mesh_cfg):
    mesh = sharding.make_mesh(mesh_cfg)
    model = ToyBlock()
    abstract = jax.eval_shape(model.init, jax.random.key(0), jnp.ones((4, 16)))
    shardings = sharding.logical_shardings(abstract, mesh, sharding.DEFAULT_RULES)
    assert jax.tree.map(lambda s: s.spec, shardings["params"]) == {
        "Dense_0": {"kernel": P("fsdp", "tensor"), "bias": P("tensor")},
        "Dense_1": {"kernel": P("tensor", "fsdp")},
        "DenseGeneral_0": {"kernel": P("fsdp", "tensor", None)},
        "scale": P(),
    }

    # Init straight into those shardings, then check what each device holds.
    params = jax.jit(lambda k: sharding.unbox(model.init(k, jnp.ones((4, 16)))), out_shardings=shardings)(
        jax.random.key(0))
    kernel = params["params"]["Dense_0"]["kernel"]
    fsdp, tensor = mesh.shape["fsdp"], mesh.shape["tensor"]
    assert kernel.addressable_shards[0].data.shape == (16 // fsdp, 32 // tensor)
    assert not isinstance(params["params"]["scale"], nn.LogicallyPartitioned)
    plain = sharding.unbox(model.init(jax.random.key(0), jnp.ones((4, 16))))
    np.testing.assert_array_equal(kernel, plain["params"]["Dense_0"]["kernel"])


def test_check_batch_divisible():
    mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    sharding.check_batch_divisible(12, mesh)
    with pytest.raises(ValueError) as error:
        sharding.check_batch_divisible(10, mesh)
    assert "batch_size 10 is not divisible by data x fsdp = 4" in str(error.value)
    with pytest.raises(ValueError, match="batch_size 100 is not divisible by data x fsdp = 8"):
        sharding.check_batch_divisible(100, sharding.make_mesh({"data": 8}))


@pytest.mark.parametrize("mesh_cfg", [{"data": 8}, {"data": 2, "fsdp": 2, "tensor": 2}])
def test_host_local_to_global(mesh_cfg):
    mesh = sharding.make_mesh(mesh_cfg)
    images = np.arange(16 * 3 * 2, dtype=np.uint8).reshape(16, 3, 2)
    tokens = np.arange(16 * 5, dtype=np.int32).reshape(16, 5)
    batch = sharding.host_local_to_global({"images": images, "tokens": tokens}, mesh)
    for name, local in (("images", images), ("tokens", tokens)):
        array = batch[name]
        assert array.sharding == sharding.batch_sharding(mesh) and array.dtype == local.dtype
        np.testing.assert_array_equal(np.asarray(array), local)
        shards = 8 // mesh.shape["tensor"]  # distinct batch slices; tensor devices hold copies
        for shard in array.addressable_shards:
            rows = shard.index[0]
            assert shard.data.shape == (16 // shards,) + local.shape[1:]
            np.testing.assert_array_equal(np.asarray(shard.data), local[rows])


def test_replicated_holds_everything_everywhere():
    mesh = sharding.make_mesh({"data": 8})
    x = jax.device_put(np.arange(6.0), sharding.replicated(mesh))
    assert all(shard.data.shape == (6,) for shard in x.addressable_shards)
    assert len(x.addressable_shards) == 8
