"""loadkit: `locust -f locustfile.py` runs guest sessions against a chat gateway.

With no --host, the reference gateway starts on loopback for the run.
Options: `locust -f locustfile.py --help` (the loadkit ones say so).
"""

import locust  # noqa: F401  (first: gevent patches before anything else)

from loadkit.locust import plugin  # noqa: F401  (registers options, events, reports)
from loadkit.locust.user import GuestUser  # noqa: F401  (the simulated guest)
