"""`python -m bench`: the jail benchmark, then the broker benchmark (which needs Redis)."""

from __future__ import annotations

import sys

from bench import bench_broker, bench_jail


def main() -> int:
    print("== jail: in-process vs jail vs fresh interpreter ==", flush=True)
    bench_jail.main([])
    print("\n== broker: no-op Celery task vs full execution ==", flush=True)
    return bench_broker.main([]) or 0


if __name__ == "__main__":
    sys.exit(main())
