"""loadkit's own harness, as ``bench/run.py`` runs it: the real plugin and user.

The only difference from ``locustfile.py``: each user takes the next gateway
of ``$BENCH_HOSTS`` (several gateway processes share the load), and the
process is steered and watched through ``bench/_benchctl.py``.
"""

import locust  # noqa: F401  (first: gevent patches before anything else)

import _benchctl
from _benchctl import FileShape  # noqa: F401  (the user count follows $BENCH_CTL)
from loadkit.locust import plugin  # noqa: F401  (options, events, reports)
from loadkit.locust import user as _user


class BenchGuest(_user.GuestUser):
    def __init__(self, environment):
        self.host = _benchctl.next_host() or None
        super().__init__(environment)


def _live(environment):
    rt = getattr(environment, "loadkit", None)
    if rt is None:
        return {}
    rec, total = rt.recorder, rt.total
    return {"open": rt.live.open,
            "authenticated": rec.authenticated + total.authenticated,
            "ended": rec.ended_total + total.ended_total}


_benchctl.status_hooks.append(_live)
