"""Time of one nginx flip (write the live file, `nginx -t`, graceful reload, a confirming
request through the frontend) against a real nginx on loopback.

    .venv/bin/python benchmarks/nginx_flip.py [--flips 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.routers.registry import make_router  # noqa: E402
from tests.support.nginx_fixture import running_nginx  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--flips", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory, running_nginx(Path(directory)) as lab:
        router = make_router(lab.settings())
        times = sorted(router.flip("web", "green" if i % 2 == 0 else "blue").seconds
                       for i in range(args.flips))
    p90 = times[min(len(times) - 1, int(len(times) * 0.9))]
    print(f"nginx flip over {args.flips} flips: median {statistics.median(times):.3f} s, "
          f"p90 {p90:.3f} s, min {times[0]:.3f} s, max {times[-1]:.3f} s")


if __name__ == "__main__":
    main()
