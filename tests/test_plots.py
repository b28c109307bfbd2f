"""bigvl.plots: each figure holds exactly the data it was given (read back from the artists and
compared with the inputs computed by hand), saves as a PNG, and rejects mismatched inputs."""
import json

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from bigvl import plots  # noqa: E402


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, size=(5, 16, 16, 3), dtype=np.uint8)


def test_image_grid_shows_each_image_with_its_wrapped_caption(images):
    captions = [f"alt: image {i}\nshort: " + "word " * 12 for i in range(5)]
    fig = plots.image_grid(images, captions, ncols=3, width=20)
    axes = fig.axes
    assert len(axes) == 6  # 2 rows × 3 columns, the last one blank
    for i in range(5):
        np.testing.assert_array_equal(axes[i].images[0].get_array(), images[i])
        label = axes[i].get_xlabel()
        assert label.startswith(f"alt: image {i}\nshort: word")
        assert all(len(line) <= 20 for line in label.split("\n"))
        assert label.replace("\n", " ").split() == captions[i].split()  # every word kept, in order
    assert not axes[5].axison and not axes[5].images
    with pytest.raises(ValueError, match="5 images but 2 captions"):
        plots.image_grid(images, ["a", "b"])


def test_similarity_heatmap_covers_the_image_patch_by_patch(images):
    sim = np.arange(16, dtype=np.float64).reshape(4, 4) / 16
    for given in (sim, sim.ravel()):  # [g,g] or row-major [g²]
        fig = plots.similarity_heatmap(images[0], given, title="t", region=(0.25, 0.5, 0.125))
        ax_map = fig.axes[1]
        base, overlay = ax_map.images
        np.testing.assert_array_equal(base.get_array(), images[0])
        np.testing.assert_array_equal(np.asarray(overlay.get_array()), sim)
        assert overlay.get_extent() == [0, 16, 16, 0]  # each cell on its 4 × 4 pixel patch, row 0 on top
        assert ax_map.get_title() == "t"
        (disc,) = ax_map.patches  # the region, in pixels
        assert disc.center == (4.0, 8.0) and disc.radius == 2.0
        # the colour of the pixel (row 13, column 2) is the map value of patch (3, 0)
        rgba = overlay.to_rgba(np.asarray(overlay.get_array()))
        assert tuple(rgba[13 // 4, 2 // 4]) == tuple(overlay.cmap(overlay.norm(sim[3, 0])))
    with pytest.raises(ValueError, match="square patch grid"):
        plots.similarity_heatmap(images[0], np.zeros(15))


def _records():
    return [{"step": 10, "loss": 3.0}, {"step": 20, "loss": 2.5}, {"step": 20, "loss": 2.4},  # a resumed step
            {"step": 30, "loss": 2.0}, {"step": 30, "zeroshot/top1": 0.4, "retrieval/t2i_r1": 0.2},
            {"step": 15, "zeroshot/top1": 0.1}]


def test_curves_plot_the_metrics_of_metrics_jsonl(tmp_path):
    with open(tmp_path / "metrics.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in _records())
    for source in (str(tmp_path), _records()):
        fig = plots.curves(source)
        (loss,) = fig.axes[0].lines
        np.testing.assert_array_equal(loss.get_xdata(), [10, 20, 30])
        np.testing.assert_array_equal(loss.get_ydata(), [3.0, 2.4, 2.0])  # the later record of step 20 wins
        evals = {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in fig.axes[1].lines}
        assert evals == {"retrieval/t2i_r1": ([30], [0.2]), "zeroshot/top1": ([15, 30], [0.1, 0.4])}
    assert len(plots.curves(_records(), eval_keys=()).axes) == 1


def test_live_curves_returns_the_final_curve_once_the_run_stops(tmp_path):
    with open(tmp_path / "metrics.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in _records()[:4])
    polls = iter([True, True, False])
    fig = plots.live_curves(str(tmp_path), lambda: next(polls), every_s=0.0)
    np.testing.assert_array_equal(fig.axes[0].lines[0].get_ydata(), [3.0, 2.4, 2.0])


def test_probability_bars_show_each_images_top_classes_in_order(images):
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(7), size=3)
    names = [f"class {c}" for c in range(7)]
    fig = plots.probability_bars(images[:3], probs, names, top=4, true=[2, 0, 6])
    for i in range(3):
        ax_image, ax_bars = fig.axes[2 * i], fig.axes[2 * i + 1]
        np.testing.assert_array_equal(ax_image.images[0].get_array(), images[i])
        ranked = sorted(range(7), key=lambda c: -probs[i, c])[:4]  # by hand
        np.testing.assert_allclose([bar.get_width() for bar in ax_bars.patches], probs[i, ranked])
        assert [t.get_text() for t in ax_bars.get_yticklabels()] == [names[c] for c in ranked]
        green = [c for c, bar in zip(ranked, ax_bars.patches) if bar.get_facecolor() == matplotlib.colors.to_rgba(
            "tab:green")]
        assert green == [c for c in ranked if c == [2, 0, 6][i]]
        assert ax_bars.get_title(loc="left") == f"true: {names[[2, 0, 6][i]]}"
    with pytest.raises(ValueError, match=r"not \[2 images, 7 classes\]"):
        plots.probability_bars(images[:2], probs, names)


def test_save_figure_writes_a_png_where_asked(images, tmp_path, monkeypatch):
    fig = plots.image_grid(images[:2])
    monkeypatch.delenv(plots.SAVE_ENV, raising=False)
    assert plots.save_figure(fig, "grid") is None
    monkeypatch.setenv(plots.SAVE_ENV, str(tmp_path / "figs"))
    path = plots.save_figure(fig, "grid")
    assert path == str(tmp_path / "figs" / "grid.png")
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
