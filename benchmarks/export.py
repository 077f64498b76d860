"""Export benchmark: time and peak memory of ``export_run`` on a recorded run.

Each repetition runs in a fresh process (peak RSS is the process's own). Make the run first, e.g.
a 100k-agent run of ``million.yaml`` for two steps::

    sed 's/size: 1000000/size: 100000/' scenarios/social/examples/million.yaml > /tmp/e100k.yaml
    .venv/bin/populace run /tmp/e100k.yaml --steps 2 --db /tmp/e100k.sqlite --quiet
    .venv/bin/python benchmarks/export.py /tmp/e100k.sqlite --format parquet --repeat 3

``--progress`` measures the export with its progress bar (``progress=True``: the tables are
counted first; the bar goes to the child's stderr, a pipe); without it, none.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, shutil, sys, tempfile, time
from populace.storage import export_run, open_run
db, fmt, progress = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
out = tempfile.mkdtemp()
t0 = time.perf_counter()
run = open_run(db)
files = export_run(run, fmt, out, progress=progress)
seconds = time.perf_counter() - t0
shutil.rmtree(out)
print(json.dumps({"seconds": seconds, "peak_rss_mb":
                  resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "files": len(files), "n_agents": int(run.info["n_agents"])}))
"""


def main() -> None:
    """Export the newest run of a database ``--repeat`` times and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("db", help="database URL or SQLite path")
    ap.add_argument("--format", choices=["parquet", "csv"], default="parquet")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--progress", action="store_true", help="with the progress bar")
    args = ap.parse_args()
    results = []
    for _ in range(args.repeat):
        done = subprocess.run(
            [sys.executable, "-c", CHILD, args.db, args.format, "1" if args.progress else "0"],
            capture_output=True, text=True, check=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    best = min(results, key=lambda r: r["seconds"])
    print(json.dumps({"db": args.db, "format": args.format, "progress": args.progress,
                      "runs": results,
                      "best_seconds": round(best["seconds"], 2),
                      "peak_rss_mb": round(max(r["peak_rss_mb"] for r in results))}, indent=1))


if __name__ == "__main__":
    main()
