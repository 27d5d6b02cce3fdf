"""Training: the Accelerate loop (loop.py), resume state and checkpoints (state.py), the steps between and after
epochs (steps.py: validation with offsets and temperature, export, test score, warm start), data loading for
records in memory or an Arrow build (data.py) and the losses (loss.py). `evaluate` lives in evaluation/.
May import: labels, config, data, model, evaluation.
"""
from trendnlp.training.data import load_splits, warn_on_class_coverage
from trendnlp.training.loop import train
from trendnlp.training.loss import class_weights, loss_function
from trendnlp.training.state import latest_checkpoint
from trendnlp.training.steps import warm_start

__all__ = ["class_weights", "latest_checkpoint", "load_splits", "loss_function", "train", "warm_start",
           "warn_on_class_coverage"]
