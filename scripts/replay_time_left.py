"""What the progress line said (or would say) about the time left, against the time that was left, replayed
from a finished experiment's run summaries: each run's steps trained in one command (from its last segment's
start), its batch, and when it ended, fed to bnexp's own PlainReporter on a clock set to those times.
Usage: python scripts/replay_time_left.py EXPERIMENT_DIR [--since 2026-12-01T23:45:33+00:00] [--until T]
(--since: when the command started, default the earliest start of a run in the folder; --until: leave out runs
started at or after T, those of a later command)."""

import argparse
import io
from datetime import datetime
from pathlib import Path

from bnexp.progress import PlainReporter, RunLeft, duration
from bnexp.store import RunDir

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("experiment", type=Path)
parser.add_argument("--since", type=datetime.fromisoformat)
parser.add_argument("--until", type=datetime.fromisoformat)
args = parser.parse_args()

runs = []  # (started, finished, name, steps trained by the command, batch)
for path in sorted(p for p in args.experiment.iterdir() if p.is_dir()):
    summary = RunDir(path).summary()
    if not summary or summary.get("status") != "completed":
        continue
    from_step = summary["segments"][-1]["from_step"]
    started, finished = (datetime.fromisoformat(summary[k]) for k in ("started", "finished"))
    runs.append((started, finished, path.name, summary["steps"] - from_step, summary["batch_size"]))
since = args.since or min(r[0] for r in runs)
runs = sorted((r for r in runs if r[0] >= since and (args.until is None or r[0] < args.until)), key=lambda r: r[1])
if not runs:
    raise SystemExit(
        f"no run of {args.experiment} started at or after {since}" + (f" and before {args.until}" if args.until else "")
    )
end = runs[-1][1]
now = 0.0
out = io.StringIO()
reporter = PlainReporter(out, clock=lambda: now)
reporter.start_experiment({name: RunLeft(steps, batch) for _, _, name, steps, batch in runs})
print(f"{len(runs)} runs from {since.isoformat()} to {end.isoformat()}\n")
print("| runs done | last run ended | progress line | time that was left |\n|---:|---|---|---:|")
for _, finished, name, _, _ in runs[:-1]:
    now = (finished - since).total_seconds()
    out.seek(0)
    out.truncate()
    reporter.run_finished(name, "completed")
    line = out.getvalue().strip()
    print(f"| {reporter.done} | {name} | {line[line.index('[') :]} | {duration((end - finished).total_seconds())} |")
