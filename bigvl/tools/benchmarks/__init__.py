"""Benchmarks: commands that measure the real code paths and print what they found.

- `python -m bigvl.tools.benchmarks.loss_memory [--devices 8] [--dim 512] [--max-batch 1048576]`
  — per-device memory of loss + gradient for the plain, all-gather, tiled-ring softmax and
  the plain and ring sigmoid losses as the global batch grows (compiled on simulated CPU
  devices, nothing that large is run), plus the speed of the tiled softmax against the plain
  one; writes docs/loss_memory.md and docs/loss_memory.png.
"""
