"""`bigvl plan` per NaFlex bucket (bigvl/plan.py): the abstract batch of a bucket is shaped as the loader's
(image_patches [B_L, L, p·p·3] uint8, image_spatial_shapes [B_L, 2] int32), and the buckets' batches are
the schedule's for the topology's chip count."""
import numpy as np
import pytest

from bigvl.config import base_config
from bigvl.data.naflex_buckets import schedule_from_config
from bigvl.plan import abstract_batch
from tests.helpers.tiny import tiny_towers


def test_bucket_batch_shapes():
    c = base_config()
    tiny_towers(c.model, image_size=32, patch_size=4)
    c.model.image.naflex = True
    c.data.naflex.lengths = [16, 36, 64]
    c.batch_size = 64
    schedule = schedule_from_config(c, 4)
    assert schedule.batch_sizes == (256, 112, 64)  # 4,096 tokens, multiples of 4 chips
    batch = abstract_batch(c, 1, None, length=36)
    assert "image" not in batch
    assert (batch["image_patches"].shape, batch["image_patches"].dtype) == ((64, 36, 48), np.uint8)
    assert (batch["image_spatial_shapes"].shape, batch["image_spatial_shapes"].dtype) == ((64, 2), np.int32)


@pytest.mark.slow  # compiles the demo's step three times for v5e:2x2 (~90 s)
def test_plan_reports_every_bucket(capsys):
    from bigvl.plan import main
    main(["--config", "demo", "--topology", "v5e:2x2", "--config.model.image.naflex=True",
          "--config.data.naflex.lengths=16,36,64"])
    out = capsys.readouterr().out
    assert all(f"NaFlex bucket L={L}, batch {b}:" in out for L, b in ((16, 256), (36, 112), (64, 64)))
