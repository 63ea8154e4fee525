"""The ``loadkit`` command: the tools around a run (the run itself is ``locust``).

    loadkit gateway [options]               run the reference gateway
    loadkit compare BASELINE CANDIDATE      compare two JSON reports
"""

from __future__ import annotations

import sys

USAGE = """usage: loadkit COMMAND [ARGS]

commands:
  gateway   run the reference gateway (loadkit gateway --help)
  compare   compare two JSON reports (loadkit compare --help)

A load test itself runs with Locust: locust -f locustfile.py"""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "gateway":
        from loadkit.gateway.__main__ import main as gateway_main

        return gateway_main(rest)
    if command == "compare":
        from loadkit.report.compare import main as compare_main

        return compare_main(rest)
    print(f"loadkit: error: unknown command {command!r} (expected gateway or compare)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
