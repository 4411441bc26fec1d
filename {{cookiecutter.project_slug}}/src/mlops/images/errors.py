"""Errors of the images room (mlops.errors gives the exit codes)."""

from __future__ import annotations

from .. import errors


class BuildError(errors.MlopsError):
    """A build, save or push failed (exit 1), or the setup is wrong (bad_input: exit 2).

    The message says which image and step, the tool's output, or the field to fix.
    """

    def __init__(self, message: str, bad_input: bool = False):
        super().__init__(message)
        self.bad_input = bad_input
        self.exit_code = 2 if bad_input else 1


class DeployError(errors.WorkFailed):
    """Deploying images to the cluster failed (an upload that does not verify, a conversion): exit 1."""


class DeploySetupError(errors.BadInput):
    """Deploy cannot start: no build, a wrong runtime, a runtime missing or too old on the cluster: exit 2.

    The message names the field or tool and the fix.
    """
