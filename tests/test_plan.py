"""`python -m bigvl.plan`: the real train step compiled for a TPU topology with no TPU attached.

The compile tests need libtpu (`pip install -e '.[plan]'`) and are skipped without it. The
demo model (one layer per tower, fsdp over the 4 chips of v5e:2x2) compiles in the fast tier:
its memory fields must be filled in and within the chip, XLA's FLOPs must match bigvl's
model count (remat off: within 10 %), and the parameters' all-gathers and the gradients'
reduce-scatters must run over the fsdp axis. B/16 compiles in the second tier.
"""
import json

import pytest

from bigvl.parallel.hardware import TPU_CHIPS, tpu_chip
from bigvl.parallel.roofline import group_size, hlo_collectives, roofline

HLO = """\
HloModule m

%all-reduce-scatter.1 (input: f32[64,128]) -> f32[16,128] {
  %input = f32[64,128]{1,0} parameter(0)
  %all-reduce.2 = f32[64,128]{1,0} all-reduce(%input), channel_id=1, replica_groups={{0,1,2,3}}, to_apply=%add
  ROOT %ds = f32[16,128]{1,0} dynamic-slice(%all-reduce.2, %c, %c), dynamic_slice_sizes={16,128}
}

ENTRY %main (p: bf16[8,32]) -> f32[16,128] {
  %p = bf16[8,32]{1,0} parameter(0)
  %all-gather.1 = bf16[32,32]{1,0} all-gather(%p), channel_id=2, replica_groups=mesh['axis_0'=1,'axis_1'=4] {'axis_1'}, dimensions={0}
  %all-gather-start.2 = (bf16[8,32]{1,0}, bf16[16,32]{1,0}) all-gather-start(%p), replica_groups=[2,2]<=[4], dimensions={0}
  %all-reduce.3 = f32[10]{0} all-reduce(%x), replica_groups={{0,1},{2,3}}, to_apply=%add
  ROOT %f = f32[16,128]{1,0} fusion(%q), kind=kCustom, calls=%all-reduce-scatter.1
}
"""


def test_hlo_collectives_counts_bytes_and_groups():
    got = hlo_collectives(HLO, num_devices=4)
    assert got["reduce-scatter"] == {"count": 1, "bytes": 64 * 128 * 4, "sent_bytes": 0.75 * 64 * 128 * 4}
    assert got["all-gather"]["count"] == 2
    assert got["all-gather"]["bytes"] == 32 * 32 * 2 + 16 * 32 * 2  # outputs, not the shards
    assert got["all-gather"]["sent_bytes"] == 0.75 * 32 * 32 * 2 + 0.5 * 16 * 32 * 2
    assert got["all-reduce"] == {"count": 1, "bytes": 40, "sent_bytes": 40.0}  # 2 (g-1)/g with g = 2
    assert group_size("replica_groups=mesh['axis_0'=2,'axis_1'=4] {'axis_0','axis_1'}", 8) == 8
    assert group_size("no groups", 8) == 8


def test_roofline_bounds():
    chip = TPU_CHIPS["v5e"]
    t = roofline(chip.peak_flops, chip.hbm_bw * 2, chip.ici_bw * 0.5, chip)
    assert (t["compute_s"], t["memory_s"], t["collective_s"]) == pytest.approx((1.0, 2.0, 0.5))
    assert t["step_s_overlapped"] == pytest.approx(2.0) and t["step_s_serial"] == pytest.approx(3.5)


def test_chip_table_matches_the_issue_capacities():
    gib = {name: chip.hbm_bytes / 2**30 for name, chip in TPU_CHIPS.items()}
    assert gib == {"v4": 32, "v5e": 16, "v5p": 95, "v6e": 32}
    assert tpu_chip("v5p:4x4x4").peak_flops == 459e12
    with pytest.raises(ValueError, match="unknown TPU generation 'v9'"):
        tpu_chip("v9:2x2")


def test_a_bad_topology_is_one_line(capsys):
    from bigvl.plan import main
    assert main(["--config", "configs/demo.py", "--topology", "v9:2x2"]) == 2
    assert capsys.readouterr().err.strip().startswith("error: topology 'v9:2x2': unknown TPU generation")


def test_max_batch_doubles_then_bisects_to_the_largest_multiple_of_the_shards(monkeypatch):
    import jax

    import bigvl.plan as plan_module
    calls = []

    def fake_plan(config, topology, devices):  # fits up to 1000 pairs
        calls.append(config.batch_size)
        return {"compiled": True, "fits": config.batch_size <= 1000, "batch_size": config.batch_size}

    monkeypatch.setattr(plan_module, "plan", fake_plan)
    config = plan_module.load_checked("configs/demo.py", ["batch_size=64"])
    best, probes = plan_module.max_batch(config, "v5e:2x2", jax.devices()[:8], fits_at=True)
    assert best == 1000 and all(b % 8 == 0 for b in calls) and len(probes) == len(calls) <= 12
    assert plan_module.max_batch(config, "v5e:2x2", jax.devices()[:8], fits_at=True, limit=256)[0] == 256


def _plan(config_path, *overrides):
    pytest.importorskip("libtpu", reason="libtpu is not installed (pip install -e '.[plan]')")
    from bigvl.plan import load_checked, plan
    return plan(load_checked(config_path, list(overrides)), "v5e:2x2")


def _check_fsdp_record(record):
    assert record["compiled"], record.get("error")
    assert record["chips"] == 4 and record["mesh"] == {"data": 1, "fsdp": 4, "tensor": 1}
    for key in ("argument_bytes", "output_bytes", "total_bytes"):
        assert record[key] > 0, key
    assert record["temp_bytes"] >= 0  # one layer per tower: XLA may need no scratch at all
    assert record["argument_bytes"] < record["total_bytes"] <= record["hbm_bytes"] == 16 * 2**30 and record["fits"]
    # The donated state is aliased into the outputs, and params and Adam's moments are split 4 ways:
    # replicated moments (what XLA chose before train/state.py constrained them) hold > 2/3 of the state.
    assert record["alias_bytes"] > 0.9 * record["output_bytes"] - 2**20
    assert record["alias_bytes"] < 0.5 * 12 * record["num_params"], record["alias_bytes"]  # f32 params + mu + nu
    assert 0.9 < record["hlo_over_model_flops"] < 1.1, record["hlo_over_model_flops"]  # remat off
    collectives = record["collectives"]
    assert collectives["all-gather"]["count"] > 0 and collectives["reduce-scatter"]["count"] > 0, collectives
    assert 0 < record["est_mfu_serial"] <= record["est_mfu_overlapped"] <= 1


def test_backend_choices_are_made_for_the_target_platform():
    """'auto' choices follow the chips compiled for: no CPU-only kernel gradient in a TPU program."""
    from bigvl.config import load_config
    from bigvl.plan import for_platform
    config = load_config("configs/demo.py")
    assert for_platform(config, "tpu").model.weight_grad_dot == "xla"
    assert for_platform(config, "cpu").model.weight_grad_dot == "transposed"
    assert config.model.weight_grad_dot == "auto"  # not changed in place
    config.model.weight_grad_dot = "transposed"
    assert for_platform(config, "tpu").model.weight_grad_dot == "transposed"  # an explicit choice stays


@pytest.mark.slow
def test_demo_train_step_compiles_for_v5e_2x2_with_fsdp_collectives():
    record = _plan("configs/demo.py", "mesh.data=1", "mesh.fsdp=-1", "model.image.depth=1", "model.text.depth=1")
    _check_fsdp_record(record)
    json.dumps(record)  # the CLI's JSON line


@pytest.mark.slow
def test_b16_train_step_compiles_for_v5e_2x2_and_its_flops_match_the_model_count():
    # B/16's widths, patches and 224 px, one layer per tower (all 12 + 12 compile in ~4 CPU minutes;
    # docs/results/pod_plans.md has the full-depth figures from the CLI).
    record = _plan("configs/clip_b16.py", "batch_size=16", "model.remat=none", "mesh.data=1", "mesh.fsdp=-1",
                   "model.image.depth=1", "model.text.depth=1")
    _check_fsdp_record(record)
    assert record["num_params"] > 35e6


def test_scanned_layers_get_no_roofline_estimate():
    """XLA counts a scanned layer stack's body once: the record of such a run (CLIPS L/14 on v5p:4x4x4,
    as bigvl.plan wrote it) reports memory but no MFU, which would read above 100 %."""
    from bigvl.plan import describe
    record = {"topology": "v5p:4x4x4", "chip": "TPU v5", "chips": 64, "mesh": {"data": 64, "fsdp": 1, "tensor": 1},
              "batch_size": 32768, "compiled": True, "compile_s": 200.8, "argument_bytes": 6821260288,
              "output_bytes": 6743618112, "alias_bytes": 6743610368, "temp_bytes": 66658692128,
              "total_bytes": 73718722656, "hbm_bytes": 102005473280, "fits": True,
              "hlo_flops_per_chip": 7.89e13, "model_flops_per_chip": 3.34e14, "hlo_over_model_flops": 0.236,
              "loop_body_counted_once": {"grad_accum_steps": 4, "scan_layers": True},
              "collectives": {"all-reduce": {"count": 15, "bytes": 888497688, "sent_bytes": 1749229823}},
              "compute_s": 0.17, "memory_s": 0.28, "collective_s": 0.003, "est_mfu_serial": None,
              "est_mfu_overlapped": None}
    text = describe(record)
    assert "fits" in text and "estimate: none (scanned layers" in text and "MFU" not in text
