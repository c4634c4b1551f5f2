"""Record the quick profile's wall time per notebook from two runner output folders, one run with
an empty teacher-output cache ("cold") and the next with that cache filled ("warm").

The runs themselves are made by the runner, one after the other on an otherwise idle machine:
    DISTILL_LIB_CACHE=/tmp/fresh python -m distill_lib run --profile quick --out runs/quick_cold
    DISTILL_LIB_CACHE=/tmp/fresh python -m distill_lib run --profile quick --out runs/quick_warm
    python benchmarks/quick_profile_time.py runs/quick_cold runs/quick_warm --out docs/quick-profile-time.json
The README quotes the written file, and ``tests/test_readme.py`` checks that it does.
"""
import argparse
import json
import os
import platform
from pathlib import Path

from distill_lib.core.results import write_json_atomic


def wall_times(runs_dir: Path) -> dict:
    """Notebook name -> the runner's wall seconds, for every run that ended ``ok``."""
    times = {}
    for record in sorted(runs_dir.glob("*/run.json")):
        run = json.loads(record.read_text())
        if run["status"] != "ok":
            raise SystemExit(f"{record}: status {run['status']!r}; only complete runs can be quoted")
        times[run["name"]] = run["wall_s"]
    if not times:
        raise SystemExit(f"{runs_dir}: no <notebook>/run.json below it; give the runner's --out folder")
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cold", type=Path, help="the runner's --out folder of the run with an empty cache")
    parser.add_argument("warm", type=Path, help="the runner's --out folder of the next run")
    parser.add_argument("--out", type=Path, required=True, help="the JSON file to write")
    args = parser.parse_args()
    cold, warm = wall_times(args.cold), wall_times(args.warm)
    if cold.keys() != warm.keys():
        raise SystemExit(f"the two runs hold different notebooks: {sorted(cold)} and {sorted(warm)}")
    record = {"cold_s": cold, "warm_s": warm, "cold_total_s": round(sum(cold.values()), 1),
              "warm_total_s": round(sum(warm.values()), 1),
              "cpu_count": os.cpu_count(), "machine": platform.machine()}
    write_json_atomic(args.out, record)
    print(f"cold {record['cold_total_s']} s, warm {record['warm_total_s']} s; written {args.out}")


if __name__ == "__main__":
    main()
