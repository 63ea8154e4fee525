"""``loadkit probe``: one guest lifecycle in slow motion, and what went wrong.

    loadkit probe [URL] [--protocol NAME] [--config FILE] [--json PATH] [--tls-ca FILE]
                  [--send-auth JSON] [--guest NAME] [--hold S] [--gateway-set KEY=VALUE]

The entry point (``loadkit.cli``) patches the process for gevent before this
module is imported: the probe is a plain process, not Locust, and the
transport it shares with the load test is cooperative. Exit codes are in
``EXIT`` and docs/probe.md.
"""

from __future__ import annotations

import argparse
import json
import ssl
import sys
from collections.abc import Callable
from typing import Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

from loadkit.errors import ConfigError
from loadkit.probe.diagnose import Diagnosis, diagnose
from loadkit.probe.driver import ProbeDriver, ProbePlan
from loadkit.probe.render import Renderer, diagnosis_lines
from loadkit.probe.trace import TraceRecorder
from loadkit.protocol.base import Profile, check_keepalive
from loadkit.report.exitcodes import ExitCode
from loadkit.settings import BEHAVIOURS, HarnessSettings, behaviour, parse_seconds

#: The probe's exit codes (docs/probe.md).
EXIT = {
    "completed": int(ExitCode.PASS),
    "bad_input": int(ExitCode.BAD_INPUT),
    "not_completed": int(ExitCode.THRESHOLDS_BREACHED),
    "probe_error": int(ExitCode.HARNESS_ERROR),
    "unreachable": int(ExitCode.TARGET_UNREACHABLE),
    "interrupted": 130,
}
#: Causes that mean the target was never reached.
UNREACHABLE = ("connect_refused", "connect_failed", "tls_verification_failed")
#: Version of the ``--json`` document's layout.
SCHEMA_VERSION = 1


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="loadkit probe", description="Run one guest lifecycle, trace every frame, name the cause.")
    p.add_argument("url", nargs="?", help="gateway base URL (http(s)://HOST[:PORT][/prefix]); "
                   "default: start the embedded reference gateway")
    p.add_argument("--protocol", help="protocol profile (default: the config's, else guest)")
    p.add_argument("--config", help="scenario TOML file: target, profile options, lifecycle timings, gateway settings")
    p.add_argument("--json", dest="json_path", metavar="PATH", help="write the trace and diagnosis as JSON")
    p.add_argument("--tls-ca", metavar="FILE", help="PEM CA certificates to verify an https:// target with")
    p.add_argument("--send-auth", metavar="JSON", help="send this auth payload instead of the profile's "
                   "($TOKEN and $GUEST_ID stand for this probe's grant)")
    p.add_argument("--guest", default="normal", metavar="NAME",
                   help="replay a misbehaving guest: " + ", ".join(BEHAVIOURS))
    p.add_argument("--hold", default="2", metavar="S", help="seconds to stay after auth, with keepalive (default 2)")
    p.add_argument("--gateway-set", action="append", default=[], metavar="KEY=VALUE",
                   help="a setting of the embedded gateway (repeatable)")
    for flag in ("connect-timeout", "auth-timeout", "keepalive-interval", "pong-timeout", "close-timeout"):
        p.add_argument(f"--{flag}", metavar="S", help=f"override the {flag.replace('-', ' ')} in seconds")
    p.add_argument("--quiet", action="store_true", help="print only the diagnosis")
    return p


def main(argv: list[str]) -> int:
    try:
        return _main(argv)
    except ConfigError as exc:
        print(f"loadkit probe: error: {str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__}",
              file=sys.stderr)
        return EXIT["bad_input"]


def _main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    scenario = _scenario(args.config)
    profile = _profile(args.protocol, scenario)
    settings = _settings(args, scenario, profile)
    hold = parse_seconds(args.hold, "--hold", positive=False)
    if args.guest not in BEHAVIOURS:
        raise ConfigError(f"--guest {args.guest!r}: expected one of {', '.join(BEHAVIOURS)}")
    send_auth = _send_auth(args.send_auth)  # checked here, sent as written
    ssl_context = _tls_context(args.tls_ca)
    url = args.url or (scenario.host if scenario is not None else None)
    gateway = None
    if url is None:
        gateway = _embedded(list(scenario.option_values().get("gateway_set", [])) if scenario else [],
                            args.gateway_set)
        url = gateway.url
    elif args.gateway_set:
        raise ConfigError("--gateway-set only applies to the embedded gateway: drop it or the URL")
    url = _base_url(url, profile)
    render = Renderer()
    out = sys.stdout

    def sink(index: int, event: dict[str, Any]) -> None:
        if not args.quiet:
            out.write("\n".join(render.event(event)) + "\n")
            out.flush()

    rec = TraceRecorder(classify=lambda data: profile.classify(data).kind.name.lower(), sink=sink)
    for secret in (scenario.secrets if scenario else ()):
        rec.redactor.add(secret, "secret from the config")
    for value in _secret_values(send_auth):
        rec.redactor.add(value, "your auth token")
    where = f"{url} (embedded reference gateway)" if gateway is not None else url
    if not args.quiet:
        print(f"loadkit probe: profile {profile.name}, guest {args.guest}, hold {hold:g} s → "
              f"{rec.redactor.text(where)}")
    plan = ProbePlan(url, profile, behaviour(args.guest), settings, hold, args.send_auth, ssl_context)
    driver = ProbeDriver(plan, rec)
    interrupted = False
    restore = _interrupt_between_steps()
    try:
        driver.run()
    except KeyboardInterrupt:
        interrupted = True
        rec.add("interrupted", {"detail": "Ctrl-C: the diagnosis covers the trace so far"})
    except Exception as exc:  # noqa: BLE001 (a probe bug: say so in one line, keep what was traced)
        rec.add("note", {"detail": f"probe error: {exc.__class__.__name__}: {rec.redactor.text(str(exc))}"})
        _finish(args, rec, driver, url, profile, diagnose(rec.exported(), driver.expected), EXIT["probe_error"])
        print(f"loadkit probe: internal error: {exc.__class__.__name__}: {rec.redactor.text(str(exc))}",
              file=sys.stderr)
        return EXIT["probe_error"]
    finally:
        restore()
        if gateway is not None:
            gateway.stop()
    events = rec.exported()
    result = diagnose(events, driver.expected)
    code = EXIT["interrupted"] if interrupted else _exit_code(result)
    _finish(args, rec, driver, url, profile, result, code)
    return code


def _interrupt_between_steps() -> Callable[[], None]:
    """Deliver Ctrl-C where the probe waits, never inside a frame being parsed or traced.

    Python raises ``KeyboardInterrupt`` wherever the main thread happens to
    be, which in the probe is often inside websockets' parser (the trace
    hook prints from there), leaving a connection that cannot close
    politely. gevent's signal watcher runs in the event loop instead, and
    the exception is thrown into the probe's greenlet where it waits.
    """
    import signal

    import gevent

    main = gevent.getcurrent()
    watcher = gevent.signal_handler(signal.SIGINT, lambda: main.throw(KeyboardInterrupt()))
    return watcher.cancel  # type: ignore[no-any-return]


def _exit_code(result: Diagnosis) -> int:
    if result.completed:
        return EXIT["completed"]
    if result.causes and all(c.cause in UNREACHABLE for c in result.causes):
        return EXIT["unreachable"]
    return EXIT["not_completed"]


def _finish(args: argparse.Namespace, rec: TraceRecorder, driver: ProbeDriver, url: str, profile: Profile,
            result: Diagnosis, code: int) -> None:
    for line in diagnosis_lines(result):
        print(line)
    if args.json_path:
        doc = {
            "version": SCHEMA_VERSION,
            "completed": result.completed,
            "exit_code": code,
            "target": rec.redactor.text(url),
            "protocol": profile.name,
            "guest": args.guest,
            "trace": rec.exported(),
            "diagnosis": [c.as_dict() for c in result.causes],
            "folklore": result.folklore,
            "expected": driver.expected,
        }
        try:
            with open(args.json_path, "w", encoding="utf-8") as fh:
                json.dump(doc, fh, indent=2, ensure_ascii=False)
                fh.write("\n")
        except OSError as exc:
            print(f"loadkit probe: error: cannot write --json {args.json_path}: {exc.strerror}", file=sys.stderr)


# -- inputs ----------------------------------------------------------------------------------------


def _scenario(path: str | None) -> Any:
    if path is None:
        return None
    from loadkit.config import load_scenario

    return load_scenario(path)


def _profile(name: str | None, scenario: Any) -> Profile:
    from loadkit.protocol import registry

    if scenario is not None:
        return scenario.make_profile(name)  # type: ignore[no-any-return]
    return registry.create(name or "guest")


def _settings(args: argparse.Namespace, scenario: Any, profile: Profile) -> HarnessSettings:
    values = scenario.option_values() if scenario is not None else {}
    defaults = HarnessSettings()
    minimum = float(getattr(profile, "min_keepalive_s", 0.0) or 0.0)

    def pick(flag: str, dest: str, default: float) -> float:
        given = getattr(args, dest)
        text = given if given is not None else values.get(dest)
        return default if text is None else parse_seconds(text, f"--{flag}")

    settings = HarnessSettings(
        keepalive_s=pick("keepalive-interval", "keepalive_interval", max(defaults.keepalive_s, minimum)),
        pong_timeout_s=pick("pong-timeout", "pong_timeout", defaults.pong_timeout_s),
        connect_timeout_s=pick("connect-timeout", "connect_timeout", defaults.connect_timeout_s),
        auth_timeout_s=pick("auth-timeout", "auth_timeout", defaults.auth_timeout_s),
        close_timeout_s=pick("close-timeout", "close_timeout", defaults.close_timeout_s),
    )
    check_keepalive(profile, settings.keepalive_s)
    return settings


def _send_auth(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--send-auth is not JSON ({exc.msg} at character {exc.pos}): quote it for the "
                          "shell, e.g. --send-auth '{\"type\":\"auth\",\"guestId\":\"$GUEST_ID\",\"token\":\"$TOKEN\"}'"
                          ) from None


def _secret_values(value: Any, key: str = "") -> list[str]:
    from loadkit.probe.trace import SECRET_KEY

    if isinstance(value, dict):
        return [s for k, v in value.items() for s in _secret_values(v, str(k))]
    if isinstance(value, list):
        return [s for v in value for s in _secret_values(v, key)]
    if isinstance(value, str) and key and SECRET_KEY.search(key) and "$TOKEN" not in value:
        return [value]
    return []


def _tls_context(ca: str | None) -> ssl.SSLContext | None:
    if not ca:
        return None
    try:
        return ssl.create_default_context(cafile=ca)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"--tls-ca {ca!r}: cannot load CA certificates ({getattr(exc, 'strerror', None) or exc})"
                          ) from None


def _base_url(url: str, profile: Profile) -> str:
    """Check the URL; a full WebSocket URL (``wss://…/api/v2/guest/websocket``) is cut to its base."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
        raise ConfigError(f"URL {url!r} is not a gateway base URL: expected http(s)://HOST[:PORT][/prefix]")
    path = parts.path.rstrip("/")
    ws_path = str(getattr(profile, "websocket_path", "") or getattr(profile, "path", "") or "")
    if ws_path and path.endswith(ws_path.rstrip("/")):
        path = path[: len(path) - len(ws_path.rstrip("/"))]
    return urlunsplit((parts.scheme, parts.netloc, path, "", "")).rstrip("/")


def _embedded(from_config: list[str], given: list[str]) -> Any:
    from loadkit.gateway.process import GatewayProcess, GatewayStartError

    args: list[str] = []
    for item in [*from_config, *given]:
        if "=" not in item:
            raise ConfigError(f"--gateway-set expects KEY=VALUE, got {item!r}")
        args += ["--set", item]
    gateway = GatewayProcess(args)
    try:
        gateway.start()
    except (GatewayStartError, OSError) as exc:
        gateway.stop()
        raise ConfigError(f"the embedded gateway did not start: {str(exc).splitlines()[0]}") from None
    return gateway


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
