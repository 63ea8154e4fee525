"""Process exit codes of loadkit commands, one per kind of verdict.

CI systems only see a number, so each way a run can end has its own:

====  =====================  ==================================================
code  name                   meaning
====  =====================  ==================================================
0     PASS                   the run was valid and every threshold held
                             (``loadkit compare``: no regression beyond a limit)
1     (not ours)             an uncaught Python exception or Locust's own
                             failure; loadkit never returns it on purpose
2     BAD_INPUT              the command line or an input file is wrong
                             (argparse's convention); nothing was measured
3     THRESHOLDS_BREACHED    the run was valid but a threshold failed
                             (``loadkit compare``: a metric regressed beyond
                             its limit)
4     INVALID_RUN            the load generator itself was saturated, so the
                             figures describe the harness, not the target
5     HARNESS_ERROR          the harness failed or its accounting did not add
                             up (sessions started != ended + open)
6     TARGET_UNREACHABLE     sessions were tried and not one authenticated:
                             nothing about the target was measured
7     INCONCLUSIVE           the run did not measure what a gate needs (a
                             threshold *not measured*), or it was stopped
                             before its planned run time: neither pass nor fail
====  =====================  ==================================================

Verdict strings in a report (``"verdict"``) map one to one onto these codes;
see :func:`verdict_exit_code`.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["ExitCode", "EXPLANATIONS", "VERDICTS", "verdict_exit_code"]


class ExitCode(IntEnum):
    """Exit status of a loadkit command (see the module docstring)."""

    PASS = 0
    BAD_INPUT = 2
    THRESHOLDS_BREACHED = 3
    INVALID_RUN = 4
    HARNESS_ERROR = 5
    TARGET_UNREACHABLE = 6
    INCONCLUSIVE = 7


EXPLANATIONS: dict[ExitCode, str] = {
    ExitCode.PASS: "valid run, every threshold held",
    ExitCode.BAD_INPUT: "bad command line or input file",
    ExitCode.THRESHOLDS_BREACHED: "thresholds breached",
    ExitCode.INVALID_RUN: "invalid run: the load generator was saturated or lost a worker",
    ExitCode.HARNESS_ERROR: "harness error or broken accounting",
    ExitCode.TARGET_UNREACHABLE: "nothing authenticated: the target was not measured",
    ExitCode.INCONCLUSIVE: "inconclusive: a gate was not measured, or the run was interrupted",
}

# The report's ``verdict`` values (docs/report-schema.md) and their codes.
VERDICTS: dict[str, ExitCode] = {
    "pass": ExitCode.PASS,
    "fail": ExitCode.THRESHOLDS_BREACHED,
    "invalid": ExitCode.INVALID_RUN,
    "error": ExitCode.HARNESS_ERROR,
    "unreachable": ExitCode.TARGET_UNREACHABLE,
    "inconclusive": ExitCode.INCONCLUSIVE,
}


def verdict_exit_code(verdict: str) -> ExitCode:
    """Return the exit code for a report's ``verdict`` string.

    Raises :class:`ValueError` for anything but the verdicts of the
    schema: a misspelt verdict is a harness bug and must not turn into an
    accidental pass.
    """
    try:
        return VERDICTS[verdict]
    except (KeyError, TypeError):
        expected = ", ".join(VERDICTS)
        raise ValueError(
            f"unknown verdict {verdict!r} (expected one of {expected})"
        ) from None
