"""Evaluation of a finished run: base vs fine-tuned on held-out data, per-sample losses.

Kept light: nothing heavy is imported here; the modules import torch & co. inside functions.
"""
