"""The SMIless predictors (reference §2.1-2.2): a two-LSTM IT model and a bucketed count model.

Both read the same inputs: the last n ITs and the counts of the arrivals that ended them.
Over-estimating the IT pre-warms too late and under-estimating the count under-provisions:
both cost SLA violations, while the opposite errors cost only idle time, so the IT model
shrinks its median and the count model forecasts a high quantile.

Deviations from the reference artifact, each for a reason:
- The window is a sequence of n steps of one value each (the artifact fed one step of n
  values, which leaves the recurrence unused); hidden size 32, not 128, for a 2-core budget.
- Values are log-transformed before MinMax scaling: ITs and counts are heavy-tailed, and the
  median (what L1 learns) commutes with a monotone transform.
- Early stopping and the window length n are judged on a validation split (the last 20 % of
  the windows), not on the training loss or the test data.

- `network`: the shared network, scaling and inference; `training`: the budgeted training.
- `it_model`: the IT model and its corrections ("record" by default); `count_model`.
- `predictor`: `SMIlessPredictor`, both behind the common interface.
Measurements: docs/benchmarks/predictor.md.
"""

from smiless.policy.predictors.lstm.count_model import BUCKET_WIDTHS, CountModel
from smiless.policy.predictors.lstm.it_model import Correction, ItModel, as_correction
from smiless.policy.predictors.lstm.predictor import SMIlessPredictor
from smiless.policy.predictors.lstm.training import TrainingBudget

__all__ = [
    "BUCKET_WIDTHS",
    "Correction",
    "CountModel",
    "ItModel",
    "SMIlessPredictor",
    "TrainingBudget",
    "as_correction",
]
