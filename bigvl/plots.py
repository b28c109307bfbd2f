"""Figures for notebooks: images with their texts, similarity heatmaps, training curves, probabilities.

    import bigvl.plots as plots
    plots.image_grid(images, ["alt: red circle clipart\\nshort: a red circle", ...])
    plots.similarity_heatmap(image, bigvl.patch_similarity(run, image[None], "a red circle")[0])
    plots.curves("workdirs/demo")                     # loss (and eval metrics) from metrics.jsonl
    plots.probability_bars(images, probs, classnames)  # zero-shot: each image beside its top classes
    plots.live_curves(workdir, thread.is_alive)       # redraws the loss while a run trains

Each function returns its matplotlib Figure (closed, so a notebook shows it once: the cell's
value, or `display(fig)`); `save_figure(fig, name)` also writes it as a PNG when the
environment variable BIGVL_SAVE_FIGURES names a directory. Images are uint8 [H,W,3].
"""
from __future__ import annotations

import os
import textwrap
import time
from typing import Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np

from bigvl.evaluators.pointing import patch_grid
from bigvl.train.metrics_log import read_metrics

SAVE_ENV = "BIGVL_SAVE_FIGURES"  # a directory: save_figure writes NAME.png there


def _grid_axes(n: int, ncols: int, cell: tuple[float, float]):
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(cell[0] * ncols, cell[1] * nrows), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    return fig, axes.ravel()[:n]


def _done(fig):
    fig.tight_layout()
    plt.close(fig)  # shown once, as the value of the cell (inline backends draw a closed figure's value)
    return fig


def image_grid(images, captions: Sequence[str] | None = None, ncols: int = 4, width: int = 30,
               fontsize: float = 8.0):
    """images uint8 [N,H,W,3] (or a list of them) with caption i under image i, each line wrapped to `width`.

    A caption may hold several lines ("alt: ...\\nshort: ..."): each is wrapped on its own.
    """
    images = list(images)
    if captions is not None and len(captions) != len(images):
        raise ValueError(f"image_grid: {len(images)} images but {len(captions)} captions")
    lines = max((sum(len(textwrap.wrap(line, width)) or 1 for line in c.split("\n")) for c in captions or ()),
                default=0)
    fig, axes = _grid_axes(len(images), ncols, (2.6, 2.6 + 0.16 * lines))
    for i, (ax, image) in enumerate(zip(axes, images)):
        ax.imshow(np.asarray(image), interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        if captions is not None:
            text = "\n".join("\n".join(textwrap.wrap(line, width)) or line for line in captions[i].split("\n"))
            ax.set_xlabel(text, fontsize=fontsize, loc="left")
    return _done(fig)


def similarity_heatmap(image, similarity, title: str | None = None, region: Sequence[float] | None = None,
                       alpha: float = 0.55, cmap: str = "jet"):
    """image uint8 [H,W,3] with a patch similarity map [g,g] (or [g²], row-major) drawn over it.

    Each map cell covers its patch of the image (nearest, no smoothing); a colour bar gives
    the values (cosines for `bigvl.patch_similarity`). The hottest cells are where the text
    matches best. region: an optional (x, y, radius) disc in fractions of the side (as the
    pointing game's `extras["regions"]`), outlined in white: where the object really is.
    """
    image = np.asarray(image)
    sim = np.asarray(similarity, np.float64)
    if sim.ndim == 1:
        grid = patch_grid(sim.shape[0])
        sim = sim.reshape(grid, grid)
    if sim.ndim != 2:
        raise ValueError(f"similarity_heatmap: expected a [g,g] or [g²] map, got shape {sim.shape}")
    h, w = image.shape[:2]
    fig, (ax_image, ax_map) = plt.subplots(1, 2, figsize=(7.0, 3.4))
    ax_image.imshow(image, interpolation="nearest")
    ax_image.set_title("image", fontsize=9)
    ax_map.imshow(image, interpolation="nearest")
    overlay = ax_map.imshow(sim, cmap=cmap, alpha=alpha, extent=(0, w, h, 0), interpolation="nearest")
    fig.colorbar(overlay, ax=ax_map, fraction=0.046, pad=0.04)
    if region is not None:
        x, y, radius = region
        ax_map.add_patch(plt.Circle((x * w, y * h), radius * w, fill=False, edgecolor="white", linestyle="--",
                                    linewidth=1.5))
    ax_map.set_title(title or "patch similarity", fontsize=9)
    for ax in (ax_image, ax_map):
        ax.set_xticks([])
        ax.set_yticks([])
    return _done(fig)


def metric_series(records: Sequence[dict], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of `key` in metrics.jsonl records, the last record of a step winning (resume)."""
    series = {r["step"]: r[key] for r in records if key in r}
    steps = sorted(series)
    return steps, [float(series[s]) for s in steps]


def curves(workdir_or_records, keys: Sequence[str] = ("loss",), eval_keys: Sequence[str] | None = None):
    """Training curves from a run's metrics.jsonl (a workdir, or its records from `read_metrics`).

    Left: `keys` over steps. Right (when there are any): eval metrics over steps, by default
    every key ending in top1 / _r1 / accuracy (as the end-of-run report plots them).
    """
    records = (read_metrics(workdir_or_records) if isinstance(workdir_or_records, (str, os.PathLike))
               else list(workdir_or_records))
    if eval_keys is None:
        eval_keys = sorted({k for r in records for k in r if "/" in k and k.endswith(("top1", "_r1", "accuracy"))})
    with_evals = any(metric_series(records, k)[0] for k in eval_keys)
    fig, axes = plt.subplots(1, 2 if with_evals else 1, figsize=(11 if with_evals else 5.5, 3.6), squeeze=False)
    ax_train = axes[0, 0]
    for key in keys:
        ax_train.plot(*metric_series(records, key), label=key)
    ax_train.set(title="training", xlabel="step")
    ax_train.legend(fontsize=8)
    if with_evals:
        for key in eval_keys:
            axes[0, 1].plot(*metric_series(records, key), marker="o", label=key)
        axes[0, 1].set(title="evaluation", xlabel="step", ylim=(0, 1))
        axes[0, 1].legend(fontsize=8)
    return _done(fig)


def live_curves(workdir: str, running: Callable[[], bool], every_s: float = 3.0, keys: Sequence[str] = ("loss",)):
    """Redraws `curves(workdir, keys)` in a notebook every `every_s` seconds while `running()`.

    For a run training in another thread (`threading.Thread(target=train_and_evaluate, ...)`):
    returns the final figure once `running()` is False. Outside IPython it only waits.
    """
    try:
        from IPython.display import clear_output, display  # optional: only inside a notebook
    except ImportError:
        clear_output = display = None
    while True:
        alive = running()
        if display is not None and read_metrics(workdir):
            clear_output(wait=True)
            display(curves(workdir, keys, eval_keys=()))
        if not alive:
            break
        time.sleep(every_s)
    if display is not None:
        clear_output(wait=True)
    return curves(workdir, keys, eval_keys=())


def probability_bars(images, probs, classnames: Sequence[str], top: int = 5, true: Sequence[int] | None = None):
    """Zero-shot: each image (row) beside a bar chart of its `top` most probable classes.

    images uint8 [N,H,W,3], probs [N,C] (`bigvl.zero_shot_classify`), classnames C names;
    `true` (optional [N] class indices) colours the true class's bar green and names it.
    """
    images, probs = list(images), np.asarray(probs, np.float64)
    if probs.shape != (len(images), len(classnames)):
        raise ValueError(f"probability_bars: probs shape {probs.shape} is not "
                         f"[{len(images)} images, {len(classnames)} classes]")
    top = min(top, len(classnames))
    fig, axes = plt.subplots(len(images), 2, figsize=(6.5, 1.7 * len(images)), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 2.4]})
    for i, (ax_image, ax_bars) in enumerate(axes):
        ax_image.imshow(np.asarray(images[i]), interpolation="nearest")
        ax_image.axis("off")
        order = np.argsort(-probs[i], kind="stable")[:top]
        colours = ["tab:green" if true is not None and c == true[i] else "tab:blue" for c in order]
        bars = ax_bars.barh(range(top), probs[i, order], color=colours)
        ax_bars.bar_label(bars, fmt="%.2f", fontsize=7, padding=2)
        ax_bars.set_yticks(range(top), [classnames[c] for c in order], fontsize=8)
        ax_bars.invert_yaxis()  # the most probable on top
        ax_bars.set_xlim(0, 1)
        ax_bars.tick_params(axis="x", labelsize=7)
        if true is not None:
            ax_bars.set_title(f"true: {classnames[true[i]]}", fontsize=8, loc="left")
    return _done(fig)


def save_figure(fig, name: str, directory: str | None = None) -> str | None:
    """Writes `fig` to DIRECTORY/NAME.png (directory: argument, else $BIGVL_SAVE_FIGURES); the path or None."""
    directory = directory or os.environ.get(SAVE_ENV)
    if not directory:
        return None
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"{name}.png")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    return path
