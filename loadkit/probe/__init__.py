"""``loadkit probe``: one guest's lifecycle traced frame by frame, with the cause named.

- ``trace``     the recorder and the redaction every output goes through (pure)
- ``authdiff``  the sent auth frame against the profile's, field by field (pure)
- ``vocabulary`` the causes and folklore claims, as documented (pure)
- ``diagnose``  trace in, causes out (pure)
- ``render``    the trace and diagnosis as terminal text (pure)
- ``driver``    the lifecycle, over the harness's transport and profiles
- ``command``   the command line, the embedded gateway, ``--json``, exit codes

See docs/probe.md.
"""
