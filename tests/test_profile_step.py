"""profile_step: HLO instructions → categories, profiler events → per-op wall time, torch op names."""
import glob
import os

import jax
import jax.numpy as jnp
import pytest

from benchmarks import profile_step as ps


def named_step(x, w1, w2):
    """A miniature train-step shape: LayerNorm, an MLP with GELU, attention-like scores, a loss and
    an 'optimizer' update, each under the named scope bigvl's modules produce."""
    with jax.named_scope("encoder"), jax.named_scope("block_0"):
        with jax.named_scope("ln_1"):
            mu = x.mean(-1, keepdims=True)
            h = (x - mu) * jax.lax.rsqrt(((x - mu) ** 2).mean(-1, keepdims=True) + 1e-6)
        with jax.named_scope("mlp"):
            with jax.named_scope("fc1"):
                h = h @ w1
            h = jax.nn.gelu(h)
        with jax.named_scope("attn"), jax.named_scope("vmap()"):
            scores = jax.nn.softmax(h @ h.T, axis=-1)
    with jax.named_scope("loss"):
        loss = -jnp.log(jnp.diag(scores) + 1e-9).mean()
    with jax.named_scope("optimizer"):
        w2 = w2 - 0.1 * jnp.sign(w2)
    return loss, w2


@pytest.fixture(scope="module")
def compiled():
    args = (jnp.ones((64, 32)), jnp.ones((32, 128)) * 0.01, jnp.ones((128, 128)))
    fn = jax.jit(named_step).lower(*args).compile()
    return fn, args


def test_hlo_instructions_and_categories_of_a_real_compile(compiled):
    fn, _ = compiled
    instrs = ps.hlo_instructions(fn.as_text())
    cats = {name: ps.xla_category(info) for name, info in instrs.items() if info["op_name"]}
    by_cat = {c: [n for n, k in cats.items() if k == c] for c in set(cats.values())}
    assert by_cat.get("matmul (dense layers)"), cats  # the fc1 dot
    assert all(instrs[n]["dot"] for n in by_cat["matmul (dense layers)"])
    assert by_cat.get("attention (QKᵀ, softmax, AV)") and by_cat.get("loss") and by_cat.get("optimizer update")
    assert set(cats.values()) <= set(ps.CATEGORIES)
    assert ps.op_kind({"op_name": "jit(train_step)/jvp(TwoTower)/TwoTower.encode_text/text/encoder/block_11/"
                       "mlp/fc1/dot_general;x", "opcode": "fusion"}) == \
        "jvp(TwoTower)/encode_text/text/encoder/block_*/mlp/fc1/dot_general"


def test_profiler_events_carry_the_hlo_instruction_names(compiled, tmp_path):
    """What the tool relies on: on the CPU, the trace has one event per executed instruction, by name."""
    from jax.profiler import ProfileData
    fn, args = compiled
    instrs = ps.hlo_instructions(fn.as_text())
    jax.block_until_ready(fn(*args))
    jax.profiler.start_trace(str(tmp_path))
    for _ in range(3):
        jax.block_until_ready(fn(*args))
    jax.profiler.stop_trace()
    [path] = glob.glob(os.path.join(str(tmp_path), "**", "*.xplane.pb"), recursive=True)
    times = ps.op_wall_times(ProfileData.from_file(path), instrs)
    assert times and set(times) <= set(instrs)
    assert any(instrs[n]["dot"] for n in times)
    assert all(t >= 0 for t in times.values())


def test_union_seconds_merges_overlapping_events():
    ns = 1e9
    assert ps.union_seconds([]) == 0.0
    assert ps.union_seconds([(0, 1 * ns), (0.5 * ns, 2 * ns), (3 * ns, 4 * ns)]) == pytest.approx(3.0)
    assert ps.union_seconds([(0, 4 * ns), (1 * ns, 2 * ns)]) == pytest.approx(4.0)  # nested: counted once


@pytest.mark.parametrize("name, category", [
    ("aten::mm", "matmul (dense layers)"), ("aten::addmm", "matmul (dense layers)"),
    ("aten::bmm", "matmul (dense layers)"),
    ("aten::_scaled_dot_product_flash_attention_for_cpu_backward", "attention (QKᵀ, softmax, AV)"),
    ("aten::_softmax", "attention (QKᵀ, softmax, AV)"), ("aten::_log_softmax", "loss"),
    ("aten::native_layer_norm_backward", "LayerNorm"), ("aten::gelu_backward", "GELU"),
    ("aten::copy_", "transpose / copy"), ("aten::transpose", "transpose / copy"),
    ("aten::_foreach_mul_", "optimizer update"), ("aten::linalg_vector_norm", "optimizer update"),
    ("aten::embedding_dense_backward", "embedding / pooling"), ("aten::add_", "other")])
def test_torch_category(name, category):
    assert ps.torch_category(name) == category


def test_summary_merges_ops_and_sums_categories():
    rows = [{"op": "a", "category": "GELU", "s": 1.0, "count": 1, "what": ""},
            {"op": "a", "category": "GELU", "s": 2.0, "count": 1, "what": ""},
            {"op": "b", "category": "loss", "s": 0.5, "count": 3, "what": ""}]
    record = ps.summary("x", 4.0, rows, top=1)
    assert record["categories"]["GELU"] == 3.0 and record["categories"]["loss"] == 0.5
    assert record["profiled_s"] == 3.5 and record["top"] == [{"op": "a", "category": "GELU", "s": 3.0,
                                                              "count": 2, "what": ""}]
    table = ps.markdown([record])
    assert "| GELU | 3.000 s (86 %) |" in table and "| `a` | GELU | 3.0000 | 2× |  |" in table


def test_a_busy_machine_is_refused_before_profiling(monkeypatch, capsys):
    import functools

    from benchmarks.machine_load import LoadGate

    def never(*a, **k):
        raise AssertionError("profiled on a busy machine")
    monkeypatch.setattr(ps, "profile_bigvl", never)
    monkeypatch.setattr(ps, "LoadGate", functools.partial(LoadGate, loadavg=lambda: (2.0, 1.0, 1.0), window_s=0.01))
    assert ps.main(["--max-load", "1.0"]) == 3
    assert "1-min load average 2.00 > 1.0" in capsys.readouterr().err
