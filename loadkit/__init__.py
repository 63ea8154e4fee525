"""loadkit: a load-testing and soak harness for guest-chat WebSocket gateways.

Layers, from the bottom up (each imports only the ones above it in this list):

- ``protocol``  frames in, events out; pure.
- ``lifecycle`` the per-guest state machine, phases and outcomes; pure.
- ``metrics``   mergeable histograms and counters; pure.
- ``connection`` what the session needs of a transport, as typing.Protocol; pure.
- ``transport`` the only module that owns sockets, gevent and timeouts.
- ``session``   drives one guest through its lifecycle over a transport.
- ``locust``    Locust glue: options, the ``GuestUser``, events, reports.
- ``gateway``   the reference gateway, a separate asyncio program.
"""

__version__ = "0.1.0"
