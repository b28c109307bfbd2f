"""The trainer end to end on a tiny world: learning, exact resume, mesh independence, evals."""
import json

import jax
import numpy as np
import pytest

from bigvl.inference.run import load_run
from bigvl.train.loop import train_and_evaluate
from bigvl.train.metrics_log import read_metrics
from tests.helpers.tiny import tiny_config


def _params(workdir):
    return jax.tree.map(np.asarray, load_run(str(workdir)).params)


def test_resume_is_exact(tiny_world, tiny_run, tmp_path):
    train_and_evaluate(tiny_config(tiny_world, total_steps=3), str(tmp_path))  # "killed" after step 3
    train_and_evaluate(tiny_config(tiny_world), str(tmp_path))  # relaunch: resumes to 6
    for a, b in zip(jax.tree.leaves(_params(tiny_run)), jax.tree.leaves(_params(tmp_path))):
        np.testing.assert_array_equal(a, b)
    straight = {r["step"]: r["loss"] for r in read_metrics(str(tiny_run)) if "loss" in r}
    resumed = {r["step"]: r["loss"] for r in read_metrics(str(tmp_path)) if "loss" in r}
    assert straight == resumed


@pytest.mark.slow
def test_fsdp_tensor_mesh_matches_data_parallel(tiny_world, tiny_run, tmp_path):
    config = tiny_config(tiny_world)
    config.mesh.update(data=2, fsdp=2, tensor=2)
    train_and_evaluate(config, str(tmp_path))
    for a, b in zip(jax.tree.leaves(_params(tiny_run)), jax.tree.leaves(_params(tmp_path))):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6)


def test_loss_falls_and_evals_run(tiny_world, tmp_path):
    config = tiny_config(tiny_world, total_steps=60, ckpt_steps=60, log_steps=5, batch_size=32)
    config.optim.lr, config.optim.schedule = 2e-3, "constant"
    config.data.caption_strategy = "recap"
    config.mesh.data = 1
    config.mesh.fsdp = -1
    config.evals.zeroshot.update(split=str(tiny_world / "zeroshot.array_record"),
                                 classes=str(tiny_world / "zeroshot_classes.json"))
    config.evals.retrieval.split = str(tiny_world / "retrieval.array_record")
    config.evals.hard_negatives.split = str(tiny_world / "hard_negatives.array_record")
    metrics = train_and_evaluate(config, str(tmp_path))
    losses = [r["loss"] for r in read_metrics(str(tmp_path)) if "loss" in r]
    assert np.mean(losses[-3:]) < min(np.log(32), np.mean(losses[:3])) - 0.2  # below chance and falling
    assert {"zeroshot/top1", "retrieval/t2i_r1", "hard_negatives/accuracy"} <= set(metrics)
    final = json.loads((tmp_path / "final_metrics.json").read_text())
    assert final["step"] == 60 and final["zeroshot/top1"] == metrics["zeroshot/top1"]


def test_standalone_evaluation_and_notebook_api(tiny_world, tiny_run, capsys):
    from bigvl import api
    from bigvl.evaluate import main as evaluate_main
    from bigvl.evaluators.splits import load_split

    split = str(tiny_world / "retrieval.array_record")
    assert evaluate_main(["--workdir", str(tiny_run), f"--config.evals.retrieval.split={split}"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["step"] == 6
    hits = printed["retrieval/t2i_r1"] * 40  # 40 retrieval records: a recall is a whole number of hits
    assert abs(hits - round(hits)) < 1e-6 and 0 <= round(hits) <= 40

    run = api.load(str(tiny_run))
    images, records = load_split(split, 32)
    texts = [r["captions"]["short"] for r in records[:5]]
    image_embeds, text_embeds = api.encode_images(run, images), api.encode_texts(run, texts)
    np.testing.assert_allclose(np.linalg.norm(image_embeds, axis=1), 1.0, rtol=1e-5)
    top, scores = api.retrieve(run, texts, images, k=3)
    sims = text_embeds @ image_embeds.T
    np.testing.assert_array_equal(top[:, 0], sims.argmax(axis=1))  # the naive best match
    np.testing.assert_allclose(scores[:, 0], sims.max(axis=1), rtol=1e-5)
    labels, probs = api.zero_shot_classify(run, images[:4], ["red circle", "blue square", "green ring"])
    assert labels.shape == (4,) and np.allclose(probs.sum(axis=1), 1.0)


def test_several_texts_per_image_train(tiny_world, tmp_path):
    config = tiny_config(tiny_world, total_steps=2, ckpt_steps=2)
    config.data.caption_strategy, config.data.multi_k = "multi", 2
    config.loss.multi_text = "multi_positive"
    train_and_evaluate(config, str(tmp_path))
    losses = [r["loss"] for r in read_metrics(str(tmp_path)) if "loss" in r]
    assert len(losses) == 2 and np.isfinite(losses).all()


@pytest.mark.slow
def test_nonfinite_steps_stop_before_any_checkpoint(tiny_world, tmp_path):
    config = tiny_config(tiny_world, total_steps=6, ckpt_steps=1)
    config.optim.lr, config.optim.clip_norm = 1e38, 0.0  # updates overflow once warmup is done
    with pytest.raises(FloatingPointError, match=r"step (\d+): .* not finite") as e:
        train_and_evaluate(config, str(tmp_path))
    bad_step = int(e.value.args[0].split(":")[0].split()[1])
    saved = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert saved and max(saved) < bad_step  # only the good steps were written
    params = _params(tmp_path)
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(params))


def test_nonfinite_steps_are_skipped_and_counted(tiny_world, tiny_run, tmp_path):
    config = tiny_config(tiny_world, total_steps=4, ckpt_steps=4)
    config.optim.update(lr=1e39, warmup_steps=0, schedule="constant", clip_norm=0.0)  # lr = inf in fp32
    config.nonfinite = "skip"
    train_and_evaluate(config, str(tmp_path))
    last = read_metrics(str(tmp_path))[-1]
    assert last["skipped_steps"] == 4
    params = _params(tmp_path)
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(params))


@pytest.mark.slow  # a second full training run (30 s); the ring losses' numerics: tests/test_ring_losses.py
def test_tiled_ring_loss_trains_like_the_plain_loss(tiny_world, tiny_run, tmp_path):
    config = tiny_config(tiny_world)
    config.loss.name, config.loss.tile_size = "softmax_tiled", 1  # b = 2 rows per device: 1×1 tiles
    train_and_evaluate(config, str(tmp_path))
    for a, b in zip(jax.tree.leaves(_params(tiny_run)), jax.tree.leaves(_params(tmp_path))):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6)
