"""Benchmark commands, run from a clone: `python -m benchmarks.NAME`. Each prints a machine-readable line.

- `python -m benchmarks.loss_memory [--devices 8] [--dim 512] [--max-batch 1048576]` — per-device
  memory of loss + gradient for the plain, all-gather, tiled-ring softmax and the plain and ring
  sigmoid losses as the global batch grows (compiled on simulated CPU devices, nothing that large
  is run), plus the speed of the tiled softmax against the plain one; writes a page and a plot
  under docs/results/.
- `python -m benchmarks.train_step --config configs/NAME.py` — step time, pairs/s, MFU, peak memory.
- `python -m benchmarks.compile_time [--suite depth clips_l14] [--depths 24 48]` — lower and compile
  time of the real train step with `model.scan_layers` off and on (one fresh process each).
- `python -m benchmarks.input_pipeline`, `...decoding`, `...open_clip_compare` (side by side with
  open_clip, `benchmarks/open_clip_side_by_side.sh`; refuses a loaded machine, see `machine_load`).
- `python -m benchmarks.profile_step [--arch S64] [--python VENV/bin/python]` — where the train
  step's time goes, by op and category, bigvl (jax.profiler) and open_clip (torch.profiler).
- `benchmarks/device_check.sh [--cpu]` — the accelerator check (`python -m benchmarks.device_check`).
"""

import bigvl  # noqa: F401 (first: picks JAX's platform before a module here imports jax; bigvl/parallel/process.py)
