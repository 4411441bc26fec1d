"""Generated answers for every free-text option (issue 10): either the pre-gen hook refuses them
(naming the field and the fix, nothing on disk), or every generated TOML/YAML/JSON file parses and
gives the answer back. Bounded (25 examples) so the render tier stays fast.
"""

import json
import tomllib
from pathlib import Path

import yaml
from cookiecutter.exceptions import FailedHookException, OutputDirExistsException
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlops import options, retry_answers
from mlops import settings as mlops_settings
from support.render import render

FREE_TEXT = [o.name for o in options.OPTIONS if not o.choices]
# cookiecutter renders every answer as a Jinja template ("{{ 7*7 }}" becomes "49"): braces are its
# syntax, not data, so they are left out of the generated text.
TEXT = st.text(alphabet=st.characters(blacklist_characters="{}", blacklist_categories=("Cs",)), max_size=300)
SAMPLES = st.sampled_from(
    ["Load forecasts 🚀 for the grid", "Jane's \"quoted\" back\\slash", "Ünïcødé ✓", "x" * 2000, "a\nb", "tab\there",
     "'''", '"""', "\\u0000", "$(touch /tmp/x)", "  padded  ", ""]
)  # fmt: skip


class _Loader(yaml.SafeLoader):
    """GitLab CI YAML: `!reference [job, key]` is a GitLab tag."""


_Loader.add_constructor("!reference", lambda loader, node: loader.construct_sequence(node))


def _parse_all(project: Path) -> None:
    for path in project.rglob("*"):
        if not path.is_file() or ".cookiecutter-home" in path.parts:
            continue
        text = (
            path.read_text(encoding="utf-8", errors="strict")
            if path.suffix in (".toml", ".yml", ".yaml", ".json")
            else ""
        )
        if path.suffix == ".toml":
            tomllib.loads(text)
        elif path.suffix in (".yml", ".yaml"):
            list(yaml.load_all(text, Loader=_Loader))
        elif path.suffix == ".json":
            json.loads(text)


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(FREE_TEXT), value=st.one_of(SAMPLES, TEXT))
def test_any_answer_is_refused_cleanly_or_round_trips(tmp_path_factory, capfd, field, value):
    out = tmp_path_factory.mktemp("fuzz")
    capfd.readouterr()
    try:
        project = render(out, **{field: value})
    except (OSError, OutputDirExistsException) as exc:
        # The slug is the directory name: cookiecutter creates it before any hook can look at it, so an
        # empty slug ("the output dir exists") or one longer than a file name may be (ENAMETOOLONG)
        # is refused by cookiecutter itself. Nothing is written.
        assert field == "project_slug", exc
        assert [p for p in out.rglob("*") if ".cookiecutter-home" not in p.parts] == []
        return
    except FailedHookException:
        err = capfd.readouterr().err
        assert "nothing was generated" in err and "Fix:" in err, err
        assert f"{field}:" in err or "project_slug:" in err or "wandb_project:" in err, err  # derived ones name theirs
        # No file of the project is left. cookiecutter creates the project dir before the pre-gen hook and
        # removes it when the hook fails; a slug with "/" leaves the empty parent dirs of that path
        # (cookiecutter 2.7). The one file written is the good answers for the next try (never a refused one).
        left = [p for p in out.rglob("*") if p.is_file() and ".cookiecutter-home" not in p.parts]
        assert [p.name for p in left] == [retry_answers.FILENAME], left
        kept = left[0].read_text(encoding="utf-8")
        if f"{field}:" in err:
            assert field not in json.loads(kept[kept.index("{") :])["default_context"]
        return
    answers = mlops_settings.load(project).answers()
    assert answers[field] == value
    _parse_all(project)
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert pyproject["name"] == answers["project_slug"] == project.name
    assert pyproject["description"] == answers["description"]
    assert pyproject["authors"] == [{"name": answers["author_name"], "email": answers["author_email"]}]
