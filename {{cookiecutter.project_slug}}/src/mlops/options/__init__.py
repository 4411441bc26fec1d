"""The template's options and mlops.toml's keys: the one definition of every answer, default and rule.

    questions.py  the template questions (OPTIONS), their derived defaults, cookiecutter.json
    rules.py      the rules a set of answers must satisfy (validate), each naming the field and the fix
    keys.py       mlops.toml's layout and the keys without a question (per cluster block and project-wide)

The pre/post-generation hooks validate answers with `validate()`, and `mlops config check` runs the
same rules on every cluster block of `mlops.toml` later, so a rule lives here and nowhere else.

No option is ever a secret: every answer ends up in plain text in the cookiecutter replay file and
in `.cruft.json`. Secrets are read by `mlops.credentials` from the environment or a prompt.
"""

from __future__ import annotations

from .keys import (
    CLUSTER_KEY,
    CLUSTER_KEYS,
    CLUSTERS,
    DEFAULT,
    LEGACY_0_2,
    LEGACY_SECTIONS,
    SECTIONS,
    SETTINGS_KEYS,
    Key,
)
from .questions import (
    AUTH_METHODS,
    BY_CLUSTER_KEY,
    BY_NAME,
    CLUSTER,
    CLUSTER_OPTIONS,
    DERIVED_FROM,
    OPTIONS,
    TOTP_METHODS,
    Option,
    cluster_name_of,
    cookiecutter_json,
    derived,
    from_answer,
    to_answer,
)
from .rules import validate
from .values import CLUSTER_NAME, Problem, cluster_name_problem, control_characters

__all__ = [
    "AUTH_METHODS", "BY_CLUSTER_KEY", "BY_NAME", "CLUSTER", "CLUSTER_KEY", "CLUSTER_KEYS", "CLUSTER_NAME",
    "CLUSTER_OPTIONS", "CLUSTERS", "DEFAULT", "DERIVED_FROM", "LEGACY_0_2", "LEGACY_SECTIONS", "OPTIONS",
    "SECTIONS", "SETTINGS_KEYS", "TOTP_METHODS", "Key", "Option", "Problem", "cluster_name_of",
    "cluster_name_problem", "control_characters", "cookiecutter_json", "derived", "from_answer", "to_answer",
    "validate",
]  # fmt: skip
