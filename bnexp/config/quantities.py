"""The quantities a claim can measure on a run: their kind and what the claim's `at` means for each.

`bnexp.claims` holds the function that measures each (it reads run records, which live above this layer); the
names and their rules are declared here, once, so a config's claims are checked when it is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Quantity:
    kind: Literal["value", "proportion"] = "value"  # a number per run, or true/false per run
    # what `at` is: none taken; a number (epoch, step, threshold: required); a 1-based layer (optional, absent:
    # the mean over layers); how many of the last evaluations (required); an evaluation mode, MODE or MODE@BATCH
    at: Literal["none", "number", "layer", "count", "mode"] = "none"


QUANTITIES: dict[str, Quantity] = {
    "final_test_acc": Quantity(),
    "best_test_acc": Quantity(),
    "final_train_loss": Quantity(),
    "test_acc_at_epoch": Quantity(at="number"),
    "test_acc_at_step": Quantity(at="number"),
    "test_acc_last_mean": Quantity(at="count"),  # averaged over the last `at` evaluations
    "generalization_gap": Quantity(at="count"),  # training-subset minus test accuracy, same
    "steps_to_loss_below": Quantity(at="number"),
    "last_epoch_loss": Quantity(),
    "steps_to_test_acc": Quantity(at="number"),
    "left_chance_step": Quantity(),
    "near_chance_at_end": Quantity("proportion"),
    "landscape_loss_range": Quantity(),
    "landscape_grad_predictiveness": Quantity(),
    "landscape_beta_smoothness": Quantity(),
    "ics_shift": Quantity(at="layer"),
    "drift_of_mean": Quantity(at="layer"),
    "drift_of_sd": Quantity(at="layer"),
    "unit_percentile_drift": Quantity(),
    "feature_sd_spread": Quantity(),
    "linear_region_share": Quantity(at="layer"),
    "effective_step_shrink": Quantity(at="layer"),
    "weight_norm_growth": Quantity(at="layer"),
    "eval_mode_acc": Quantity(at="mode"),
    "running_var_gap": Quantity(at="layer"),
    "scale_output_change": Quantity(),
    "scale_grad_ratio_error": Quantity(),
    "step_time_ratio_to_bn": Quantity(),
    "long_sequence_acc": Quantity(at="number"),
}
# the ways a trained BN model can be evaluated (the eval_modes analysis), as `at` of eval_mode_acc
EVAL_MODES = (
    "a_eval",
    "b_batch_stats_shuffled",
    "c_batch_stats_homogeneous",
    "c_eval_homogeneous",
    "c_batch_stats_near_duplicates",
    "c_eval_near_duplicates",
    "d_lost_running_stats",
    "e_reestimated",
)
