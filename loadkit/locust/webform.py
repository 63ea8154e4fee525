"""Locust's web form, as a browser sends it, for loadkit's options.

Why this exists: Locust's ``/swarm`` converts each extra field with
``type(current)(value)`` and skips the options' ``type=``. For loadkit that
broke in three ways: a repeatable option (``--threshold``, ``--gateway-set``)
whose default is ``[]`` is converted with ``int`` (an empty list passes
Locust's "all items are ints" test), so the empty field a browser always
sends fails with ``invalid literal for int()``; a bad value was only found
at ``test_start``, after users had spawned; and gateway settings typed into
the form never reached the already running embedded gateway.

So loadkit handles its own fields before Locust sees the request (a Flask
``before_request`` hook on ``/swarm``): each field is converted the way the
command line converts it (the option's own ``type=``), the whole set is
validated the way ``test_start`` validates it (``Runtime.configure``), and a
bad value is refused with the same one line the command line prints, in
Locust's swarm response (``{"success": false, "message": ...}``), which the
UI shows, before any user spawns. Good values are stored in
``parsed_options`` and removed from the form, so Locust's conversion never
runs on them. Changed gateway settings restart the embedded gateway on the
same port, between tests.

Repeatable fields take one value per line or a comma-separated list. A
comma only splits gateway settings before ``KEY=`` (so
``faults.auth_delay=lognormal:40,400`` stays one setting).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from typing import Any

from loadkit.errors import ConfigError

#: A comma followed by ``KEY=`` starts a new gateway setting.
_SETTING_START = re.compile(r",(?=\s*[A-Za-z_][A-Za-z0-9_.]*\s*=)")


def split_values(dest: str, text: str) -> list[str]:
    """One field of a repeatable option → its values (lines, or comma-separated)."""
    items: list[str] = []
    for line in str(text).splitlines():
        parts = _SETTING_START.split(line) if dest == "gateway_set" else line.split(",")
        items += [p.strip() for p in parts if p.strip()]
    return items


def _flag(action: argparse.Action) -> str:
    return "/".join(action.option_strings) or action.dest


def form_values(form: Mapping[str, list[str]], actions: Mapping[str, argparse.Action]) -> dict[str, Any]:
    """loadkit's fields of a submitted form (``{name: [values]}``) as option values.

    Raises ``ConfigError`` with the command line's message for a value the
    option's ``type=`` refuses.
    """
    values: dict[str, Any] = {}
    for dest, action in actions.items():
        if dest not in form:
            continue
        raw = form[dest]
        if getattr(action, "nargs", None) == 0 or isinstance(action, argparse._StoreTrueAction):
            values[dest] = any(v.strip().lower() in ("true", "on", "1", "yes") for v in raw)
            continue
        if isinstance(action, argparse._AppendAction):
            values[dest] = [_typed(action, item) for text in raw for item in split_values(dest, text)]
            continue
        values[dest] = _typed(action, raw[-1].strip() if raw else "")
    return values


def _typed(action: argparse.Action, text: str) -> Any:
    """``text`` through the option's ``type=`` (an OptionText carrying its value), as the command line does."""
    if action.type is None:
        return text
    try:
        return action.type(text)  # type: ignore[operator]
    except argparse.ArgumentTypeError as exc:
        raise ConfigError(f"argument {_flag(action)}: {exc}") from None


def install(web_ui: Any, environment: Any, rt: Any) -> None:
    """Handle loadkit's fields of ``POST /swarm`` before Locust does."""
    from flask import jsonify, request
    from werkzeug.datastructures import ImmutableMultiDict

    from loadkit.locust import embedded, options

    actions = options.actions()
    state = {"gateway_set": list(getattr(rt.opts, "gateway_set", None) or [])}

    def refuse(message: str) -> Any:
        return jsonify({"success": False, "message": message, "host": environment.host})

    def running() -> bool:
        runner = environment.runner
        return runner is not None and runner.state in ("spawning", "running", "stopping")

    def _swarm_form() -> Any:
        if request.path != "/swarm" or request.method != "POST":
            return None
        form = request.form.to_dict(flat=False)
        mine = {k: v for k, v in form.items() if k in actions}
        if not mine and "host" not in form:
            return None
        try:
            values = form_values(mine, actions)
        except ConfigError as exc:
            return refuse(f"locust: error: {exc}")
        opts = rt.opts
        changed = {k: v for k, v in values.items() if getattr(opts, k, None) != v}
        if changed and running():
            return refuse("loadkit: error: loadkit's settings can only change between tests: "
                          "stop the test, then start a new one")
        host = form.get("host", [""])[-1].strip()
        old_url = rt.gateway.url if rt.gateway is not None else None
        if rt.gateway is not None and host in ("", old_url):
            host = ""  # the embedded gateway (its URL may change below)
        elif host:
            try:
                options.validate_host(host)
            except ConfigError as exc:
                return refuse(f"loadkit: error: {exc}")
        new_sets = values.get("gateway_set", state["gateway_set"])
        if new_sets != state["gateway_set"]:
            if rt.gateway is None or host:
                return refuse("loadkit: error: --gateway-set applies to the embedded gateway only; "
                              "clear the field, or clear Host to use the embedded gateway")
            try:
                _check_gateway_sets(new_sets)
            except ConfigError as exc:
                return refuse(f"loadkit: error: {exc}")
        saved = {k: getattr(opts, k, None) for k in changed}
        for k, v in changed.items():
            setattr(opts, k, v)
        if changed and not running():
            try:
                rt.configure()  # the same checks as test_start, before any user spawns
            except ConfigError as exc:
                for k, v in saved.items():
                    setattr(opts, k, v)
                rt.configure()
                return refuse(f"loadkit: error: {exc}")
        if new_sets != state["gateway_set"]:
            port = int(old_url.rsplit(":", 1)[1].split("/")[0]) if old_url else 0
            rt.gateway.stop()
            try:
                rt.gateway = embedded.start(new_sets, port=port, protocol=rt.options.protocol)
            except ConfigError as exc:  # the port was taken meanwhile: any port will do
                rt.gateway = embedded.start(state["gateway_set"], port=0, protocol=rt.options.protocol)
                environment.host = rt.gateway.url
                return refuse(f"loadkit: error: {exc}")
            state["gateway_set"] = list(new_sets)
        rest = {k: v for k, v in form.items() if k not in actions}
        if "host" in rest:
            rest["host"] = [host or (rt.gateway.url if rt.gateway is not None else "")]
        request.form = ImmutableMultiDict([(k, v) for k, vs in rest.items() for v in vs])
        return None

    web_ui.app.before_request(_swarm_form)  # a plain call, not a decorator: web_ui is untyped


def _check_gateway_sets(items: list[str]) -> None:
    """The embedded gateway's own check of ``--set`` pairs, in this process (fast, no spawn)."""
    from loadkit.gateway.settings import SettingsError, load_settings

    for item in items:
        if "=" not in item:
            raise ConfigError(f"--gateway-set expects KEY=VALUE, got {item!r}")
    try:
        load_settings(overrides=items)
    except SettingsError as exc:
        raise ConfigError(f"--gateway-set: {exc}") from None
