"""Reference point: a Locust user with no socket at all, that only sleeps."""

import locust
from locust import User, constant, task

from _benchctl import FileShape  # noqa: F401


class BareUser(User):
    wait_time = constant(3600)

    @task
    def idle(self):
        locust.events.request  # noqa: B018  (nothing to do: the user only exists)
