"""Training one run, one job per module: `run` (start or resume, train, summarize, record a failure), `loop` (the
Trainer: its step loop, its state), `evaluate`, `loss_window` (train records and divergence), `timing`,
`resume` (checkpoint and final-weight files), `summary` (summary.json and provenance), `compute` (device, seeds,
threads, precision), `stop` (SIGINT/SIGTERM) and `reporting` (what a progress display is told). bnexp.train
gathers the names the rest of bnexp uses."""
