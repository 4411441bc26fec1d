"""Unit tests of mlops.runid: the one definition of a run id, its resolution and its directory."""

import ast
import re

import pytest

from mlops import errors, runid
from support.render import PROJECT_TEMPLATE

PACKAGE = PROJECT_TEMPLATE / "src" / "mlops"


@pytest.mark.parametrize("good", ["p1", "p42", "laptop-20261205-101010-ab12", "v-x.y_z", "A" + "a" * 100])
def test_good_run_ids_pass(good):
    assert runid.check(good) == good and runid.valid(good)


@pytest.mark.parametrize(
    "bad", ["", "..", "a..b", "../x", "/abs", "a/b", ".hidden", "-x", "a b", "p1\n", "x\ny", "a" * 102, None, 7]
)
def test_bad_run_ids_name_the_field_and_the_fix(bad):
    with pytest.raises(errors.BadInput) as info:
        runid.check(bad, "--run-id")
    message = str(info.value)
    assert message.startswith("--run-id: ") and "Fix: use letters, digits" in message
    assert "\n" not in message  # a control character is never echoed
    assert not runid.valid(bad)


def test_new_is_unique_sortable_and_checked():
    a, b = runid.new("laptop"), runid.new("laptop")
    assert a != b and re.fullmatch(r"laptop-\d{8}-\d{6}-[0-9a-f]{4}", a)
    with pytest.raises(errors.BadInput, match="run id prefix"):
        runid.new("../x")


@pytest.mark.parametrize(
    "env, expected",
    [({"CI_PIPELINE_ID": "4242"}, "p4242"), ({"CI_PIPELINE_ID": ""}, ""), ({}, ""),
     ({"CI_PIPELINE_ID": "12; rm -rf ~"}, ""), ({"CI_PIPELINE_ID": "١٢"}, ""),
     ({"MLOPS_RUN_ID": "p9"}, "")],  # MLOPS_RUN_ID is no longer read
)  # fmt: skip
def test_from_ci_takes_only_a_numeric_pipeline_id(env, expected):
    assert runid.from_ci(env) == expected


def test_resolve_order_explicit_then_ci_then_the_last_run_of_that_cluster(tmp_path):
    ci = {"CI_PIPELINE_ID": "7"}
    assert runid.resolve("given", tmp_path, "uni", ci) == "given"
    assert runid.resolve(None, tmp_path, "uni", ci) == "p7"
    with pytest.raises(errors.BadInput, match="none submitted from here to cluster 'uni'"):
        runid.resolve(None, tmp_path, "uni", {})
    path = runid.remember(tmp_path, "uni", "laptop-1")
    assert path == tmp_path / ".mlops" / "last-run" / "uni" and path.read_text() == "laptop-1\n"
    runid.remember(tmp_path, "bw", "laptop-2")
    assert runid.resolve(None, tmp_path, "uni", {}) == "laptop-1"
    assert runid.resolve("", tmp_path, "bw", {}) == "laptop-2"
    with pytest.raises(errors.BadInput, match="--run-id"):
        runid.resolve("../x", tmp_path, "uni", ci)


def test_a_bad_remembered_run_or_cluster_name_is_refused(tmp_path):
    (tmp_path / ".mlops" / "last-run").mkdir(parents=True)
    (tmp_path / ".mlops" / "last-run" / "uni").write_text("../../etc\n")
    with pytest.raises(errors.BadInput, match=r"\.mlops/last-run/uni"):
        runid.resolve(None, tmp_path, "uni", {})
    with pytest.raises(errors.BadInput, match="not a cluster name"):
        runid.remember(tmp_path, "../x", "p1")


def test_the_0_2_last_run_file_is_read_and_replaced(tmp_path):
    (tmp_path / ".mlops").mkdir()
    (tmp_path / ".mlops" / "last-run").write_text("laptop-old\n")  # 0.2: one file, one cluster
    assert runid.resolve(None, tmp_path, "hpc", {}) == "laptop-old"
    runid.remember(tmp_path, "hpc", "laptop-new")
    assert (tmp_path / ".mlops" / "last-run").is_dir()
    assert runid.resolve(None, tmp_path, "hpc", {}) == "laptop-new"


def test_run_dir():
    assert runid.run_dir("/w/proj", "p1") == "/w/proj/runs/p1"
    with pytest.raises(errors.BadInput):
        runid.run_dir("/w/proj", "../p1")


def test_no_other_module_writes_a_run_id_pattern_or_the_run_dir_path():
    """One definition: no regex of run-id shape, no `/runs/{run_id}` path and no MLOPS_RUN_ID read anywhere else."""
    shape = "[A-Za-z0-9][A-Za-z0-9_.-]"
    for path in PACKAGE.rglob("*.py"):
        if path.name == "runid.py":
            continue
        text = path.read_text()
        assert shape not in text, f"{path}: a second run-id pattern"
        assert "/runs/{run_id}" not in text and "/runs/{check" not in text, f"{path}: the run dir built again"
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Constant) and node.value == "MLOPS_RUN_ID":
                pytest.fail(f"{path}: reads MLOPS_RUN_ID (the run of a pipeline is p<CI_PIPELINE_ID>)")


def test_the_pipeline_sets_no_run_id_variable():
    ci = (PROJECT_TEMPLATE / ".gitlab" / "ci" / "cluster.yml").read_text()
    assert "MLOPS_RUN_ID:" not in ci and "RUN_ID: p$CI_PIPELINE_ID" not in ci
