"""Post-training analyses: read a finished run's final weights, write their results into the run directory.

eval_modes: accuracy under each way a normalized model can be evaluated (a2's pitfalls, re-estimated
statistics); scale_invariance: BN's invariance to the scale of the preceding weights, measured.
"""
