"""`make bench`: run every benchmark in turn (or those named on the command line)."""

from __future__ import annotations

import importlib
import sys

BENCHES = ("bench.ledger_bench", "bench.rating_bench", "bench.call_bench", "bench.agi_soak",
           "bench.real_asterisk", "bench.cluster_bench")


def main(names: list[str]) -> int:
    for name in names or BENCHES:
        try:
            module = importlib.import_module(name if "." in name else f"bench.{name}")
        except ModuleNotFoundError as exc:
            print(f"== {name}: not available ({exc})")
            continue
        print(f"== {name}", flush=True)
        module.main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
