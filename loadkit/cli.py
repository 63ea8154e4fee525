"""The ``loadkit`` command: the tools around a run (the run itself is ``locust``).

    loadkit gateway [options]               run the reference gateway
    loadkit compare BASELINE CANDIDATE      compare two JSON reports
    loadkit probe [URL] [options]           one guest's lifecycle, traced, with the cause named
"""

from __future__ import annotations

import sys

USAGE = """usage: loadkit COMMAND [ARGS]

commands:
  gateway   run the reference gateway (loadkit gateway --help)
  compare   compare two JSON reports (loadkit compare --help)
  probe     trace one guest's lifecycle and name what went wrong (loadkit probe --help)

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
    if command == "probe":
        # The probe drives the load test's cooperative transport in a plain
        # process: patch before anything imports socket or ssl, here only.
        from gevent import monkey

        monkey.patch_all()
        from loadkit.probe.command import main as probe_main

        return probe_main(rest)
    print(f"loadkit: error: unknown command {command!r} (expected gateway, compare or probe)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
