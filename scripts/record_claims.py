"""Record each config's claims (and `runs_began`, which dates them) in its committed experiment record
(results/<exp>/experiment.yaml), without training: neither changes a run (they are not compared with the runs'
configs), so the record's are replaced by the config's, validated, and the rest of the record is kept as written.
    python scripts/record_claims.py [RESULTS [CONFIGS]]      # default: results configs
"""

from __future__ import annotations

import sys
from pathlib import Path

from bnexp.config import load_config
from bnexp.store import EXPERIMENT_FILE, dump_yaml, parse_yaml, write_atomic


def record_claims(results: Path, configs: Path) -> list[str]:
    """The experiments whose recorded claims (or runs_began) changed."""
    changed = []
    for record in sorted(results.glob(f"*/{EXPERIMENT_FILE}")):
        config = configs / f"{record.parent.name}.yaml"
        if not config.is_file():
            continue
        meta = parse_yaml(record.read_text())
        cfg = load_config(config)
        recorded = {"claims": [c.model_dump() for c in cfg.claims], "runs_began": cfg.runs_began}
        before = dict(meta["config"])
        for key, value in recorded.items():
            if value is None and key != "claims":
                meta["config"].pop(key, None)  # absent in the records written before it existed
            else:
                meta["config"][key] = value
        if meta["config"] != before:
            write_atomic(record, dump_yaml(meta))
            changed.append(record.parent.name)
    return changed


if __name__ == "__main__":
    args = [Path(a) for a in sys.argv[1:]]
    results, configs = (args + [Path("results"), Path("configs")][len(args) :])[:2]
    for name in record_claims(results, configs):
        print(f"{name}: claims recorded")
