"""The Colab quickstart (docs/colab/quickstart.ipynb): its paired source is in sync, and it runs top to
bottom (second tier): every code cell ran without an error, the trained CLIP's zero-shot top-1 beats
chance, and every plotting cell produced a PNG (shown in the notebook and saved as a file)."""
import json
import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SOURCE, NOTEBOOK = ROOT / "docs/colab/quickstart.py", ROOT / "docs/colab/quickstart.ipynb"
# the figure each plotting cell saves (plots.save_figure), in cell order
FIGURES = ["world", "clip_loss", "zero_shot", "retrieval", "heatmap", "coca_loss", "captions"]


def _cells(notebook):
    return [(c.cell_type, c.source.strip()) for c in notebook.cells]


def test_the_notebook_is_generated_from_its_paired_source():
    """Edit docs/colab/quickstart.py, then: jupytext --to ipynb docs/colab/quickstart.py"""
    jupytext = pytest.importorskip("jupytext")
    nbformat = pytest.importorskip("nbformat")
    stored = nbformat.read(NOTEBOOK, as_version=4)
    assert _cells(stored) == _cells(jupytext.read(SOURCE)), \
        "docs/colab/quickstart.ipynb is out of date: jupytext --to ipynb docs/colab/quickstart.py"
    assert all(not c.get("outputs") for c in stored.cells if c.cell_type == "code")  # stored without outputs
    sources = "\n".join(s for _, s in _cells(stored))
    for name in FIGURES:
        assert f'plots.save_figure(fig, "{name}")' in sources


@pytest.mark.slow
def test_the_notebook_runs_top_to_bottom(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}  # Colab's 1 CPU
    env.update(PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]),
               BIGVL_QUICKSTART_DIR=str(tmp_path / "work"), BIGVL_SAVE_FIGURES=str(tmp_path / "figures"))
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute(env=env)  # raises CellExecutionError naming the cell on the first error
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))  # every cell ran, in order
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]

    text = "".join(o.get("text", "") for c in code for o in c.outputs if o.output_type == "stream")
    result = json.loads(text.split("RESULT ", 1)[1].splitlines()[0])
    assert result["zeroshot_top1"] > 2 * result["zeroshot_chance"], result  # 30 classes: chance 0.033

    plotting = [c for c in code if "plots.save_figure" in c.source]
    assert len(plotting) == len(FIGURES)
    for cell, name in zip(plotting, FIGURES):
        assert any("image/png" in o.get("data", {}) for o in cell.outputs), f"no figure shown by the {name} cell"
        png = tmp_path / "figures" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    final = json.loads((tmp_path / "work/clip/final_metrics.json").read_text())
    assert final["zeroshot/top1"] == result["zeroshot_top1"] and final["step"] == 150
