"""Throughput benchmark; the same as `bnexp bench` (see `bnexp bench --help`).

python scripts/bench.py --data-root ../shared/data --reps 5
"""

from bnexp.cli import app

if __name__ == "__main__":
    app(["bench", *__import__("sys").argv[1:]])
