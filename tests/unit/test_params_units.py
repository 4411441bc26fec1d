"""The parameter sweep: validation messages, expansion, stable ids, env files.

(Moved from the rendered project's tests/ in 0.3; the project keeps the check of its own parameters file.)
"""

import json
import stat

import pytest

from mlops import params
from support.render import PROJECT_TEMPLATE

SCHEMA = PROJECT_TEMPLATE / "params" / "parameters.schema.json"  # copied without rendering


def write(tmp_path, doc):
    path = tmp_path / "parameters.json"
    path.write_text(json.dumps(doc))
    return path


def expand(tmp_path, doc):
    return params.expand(params.validate(write(tmp_path, doc), SCHEMA))


def errors(tmp_path, doc):
    with pytest.raises(params.ParamsError) as info:
        params.validate(write(tmp_path, doc), SCHEMA)
    return "\n".join(info.value.errors)


def test_grid_zip_fixed_and_explicit_configurations(tmp_path):
    doc = {
        "fixed": {"horizon": 24},
        "grid": {"window": [24, 48], "alpha": [0.1, 1.0]},
        "zip": [{"hidden": [8, 16, 32], "dropout": [0.0, 0.1, 0.2]}],
        "configurations": [{"window": 7, "alpha": 3.0, "hidden": 4, "dropout": 0.5}],
    }
    configurations = expand(tmp_path, doc)
    assert len(configurations) == 2 * 2 * 3 + 1
    combos = [c.parameters for c in configurations]
    assert all(c["horizon"] == 24 for c in combos)
    # zip keeps the i-th values together: no (hidden=8, dropout=0.2)
    assert {(c["hidden"], c["dropout"]) for c in combos} == {(8, 0.0), (16, 0.1), (32, 0.2), (4, 0.5)}
    assert combos[-1] == {"horizon": 24, "window": 7, "alpha": 3.0, "hidden": 4, "dropout": 0.5}


def test_expansion_is_deterministic_and_ids_are_content_based(tmp_path):
    doc = {"grid": {"a": [1, 2], "b": ["x", "y"]}}
    first = expand(tmp_path, doc)
    assert [c.config_id for c in first] == [c.config_id for c in expand(tmp_path, doc)]
    # Same configuration, other file layout and key order: same id.
    other = expand(tmp_path, {"configurations": [{"b": "y", "a": 2}]})
    assert other[0].config_id == next(c.config_id for c in first if c.parameters == {"a": 2, "b": "y"})
    assert len({c.config_id for c in first}) == 4


def test_duplicates_are_dropped(tmp_path):
    configurations = expand(tmp_path, {"grid": {"a": [1, 2]}, "configurations": [{"a": 2}]})
    assert [c.parameters for c in configurations] == [{"a": 1}, {"a": 2}]


def test_fixed_only_is_one_configuration(tmp_path):
    assert [c.parameters for c in expand(tmp_path, {"fixed": {"a": 1}})] == [{"a": 1}]


@pytest.mark.parametrize(
    "doc, expected",
    [
        ({"grid": {"alpha": [0.1, "fast lane"]}}, "$.grid.alpha[1]: 'fast lane' has characters an env file cannot"),
        ({"grid": {"alpha": 0.1}}, "$.grid.alpha: 0.1 is not of type 'array' (rule: type)"),
        ({"grid": {"alpha": []}}, "$.grid.alpha: [] should be non-empty (rule: minItems)"),
        ({"grid": {"Alpha": [1]}}, "parameter name 'Alpha' must be lowercase snake_case"),
        ({"gird": {"alpha": [1]}}, "$: Additional properties are not allowed ('gird' was unexpected)"),
        ({"fixed": {"a": [1, 2]}}, "$.fixed.a: [1, 2] is not of type 'number', 'boolean', 'string' (rule: type)"),
        (
            {"zip": [{"a": [1, 2], "b": [1]}]},
            "$.zip[0]: linked lists differ in length (a=2, b=1) (rule: zip lists have equal length)",
        ),
        ({"fixed": {"a": 1}, "grid": {"a": [2]}}, "$.grid.a: also defined in $.fixed (rule: a name is defined once"),
        ({"fixed": {"run_id": 1}}, "env name RUN_ID is reserved for the pipeline"),
        ({"fixed": {"wandb_mode": "x"}}, "env name WANDB_MODE is reserved"),
        (
            {"grid": {"a": [1, 2]}, "configurations": [{"b": 1}]},
            "$.configurations[0]: missing a; unexpected b (rule: every configuration sets the same parameters)",
        ),
        (
            {"grid": {"a": list(range(50)), "b": list(range(50))}, "max_configurations": 2000},
            "$: expands to 2,500 configurations, above the cap of 2,000 (rule: max_configurations",
        ),
    ],
)
def test_bad_files_name_the_place_and_the_rule(tmp_path, doc, expected):
    assert expected in errors(tmp_path, doc)


def test_invalid_json_names_line_and_column(tmp_path):
    path = tmp_path / "parameters.json"
    path.write_text('{\n  "grid": {"a": [1,]}\n}')
    with pytest.raises(params.ParamsError, match=r"line 2 column \d+: invalid JSON"):
        params.validate(path, SCHEMA)


def test_env_files_are_private_unquoted_and_complete(tmp_path):
    configurations = expand(tmp_path, {"fixed": {"flag": True, "name": "ridge"}, "grid": {"lr": [0.001, 1e-05]}})
    out = tmp_path / "run" / "envs"
    params.write_envs(configurations, out, "/project", {"RUN_ID": "p42", "WANDB_MODE": "offline"})
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    files = sorted(out.glob("*.env"))
    assert len(files) == 2
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        env = params.read_env_file(path)
        cid = path.stem
        assert env["CONFIG_ID"] == cid and env["RUN_ID"] == "p42"
        assert env["DATA_DIR"] == "/project/data" and env["RESULT_DIR"] == f"/project/results/{cid}"
        assert env["WANDB_RUN_ID"] == f"p42-{cid}" and env["WANDB_NAME"] == cid
        assert env["FLAG"] == "true" and env["NAME"] == "ridge"
        assert not any(v.startswith(("'", '"')) for v in env.values())
    index = params.read_index(out)
    assert [e["config_id"] for e in index] == [c.config_id for c in configurations]
    assert index[1]["parameters"]["lr"] == 1e-05


def test_expand_never_copies_secrets_into_env_files(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "canary-wandb-key-0123456789")
    monkeypatch.setenv("RUN_ID", "r1")
    configurations = expand(tmp_path, {"fixed": {"a": 1}})
    out = params.write_envs(configurations, tmp_path / "envs", "/project")
    text = "".join(p.read_text() for p in out.iterdir())
    assert "canary-wandb-key" not in text and "RUN_ID=r1" in text


def test_a_failed_write_leaves_the_old_envs_untouched(tmp_path):
    out = tmp_path / "envs"
    params.write_envs(expand(tmp_path, {"fixed": {"a": 1}}), out, "/project", {})
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(params.ParamsError):
        params.write_envs(expand(tmp_path, {"fixed": {"a": 2}}), out, "/project\nwith a newline", {})
    assert sorted(p.name for p in out.iterdir()) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".envs-")]


def test_a_project_path_with_a_space_or_an_umlaut_reaches_the_env_files(tmp_path):
    """Issue 18.8: `mlops run --local` in "My Projects/Übungen/..." writes env files it reads back itself."""
    project_dir = str(tmp_path / "My Projects" / "Übungen" / "run")
    out = params.write_envs(expand(tmp_path, {"fixed": {"a": 1}}), tmp_path / "envs", project_dir, {})
    (path,) = out.glob("*.env")
    env = params.read_env_file(path)
    assert env["PROJECT_DIR"] == project_dir and env["RESULT_DIR"] == f"{project_dir}/results/{path.stem}"
    with pytest.raises(params.ParamsError, match="has characters an env file cannot carry"):  # values: strict
        expand(tmp_path, {"fixed": {"a": "Übung"}})
