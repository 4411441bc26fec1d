"""The layering of the `mlops` package (issue 20): no import circle, and the leaves import nothing above them."""

import subprocess
import sys

from support.render import TEMPLATE

sys.path.insert(0, str(TEMPLATE / "scripts"))
import import_cycles  # noqa: E402

# leaf -> the only mlops modules it may import (contract B and the core leaves)
LEAVES = {
    "mlops.errors": set(),
    "mlops.rundir": set(),
    "mlops.runid": {"mlops.errors", "mlops.options"},
    "mlops.options": {f"mlops.options.{m}" for m in ("keys", "questions", "rules", "values")},
}


def test_no_import_circle_in_the_package():
    proc = subprocess.run([sys.executable, str(TEMPLATE / "scripts" / "import_cycles.py"), "--check"],
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stdout


def test_the_script_finds_a_circle_and_its_kinds(tmp_path):
    pkg = tmp_path / "mlops"
    (pkg / "room").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "leaf.py").write_text("def f():\n    from .room import deep\n")
    (pkg / "room" / "__init__.py").write_text("")
    (pkg / "room" / "deep.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .. import leaf\n"
    )
    graph = import_cycles.edges(import_cycles.modules(pkg))
    assert graph["mlops.leaf"] == {"mlops.room": "lazy", "mlops.room.deep": "lazy"}
    assert graph["mlops.room.deep"] == {"mlops.leaf": "type"}
    assert import_cycles.circles(graph) == [["mlops.leaf", "mlops.room.deep"]]


def test_leaves_import_nothing_above_them():
    graph = import_cycles.edges(import_cycles.modules())
    for leaf, allowed in LEAVES.items():
        assert set(graph[leaf]) <= allowed, (leaf, set(graph[leaf]) - allowed)
    for name in graph:
        if name.startswith("mlops.options."):
            assert all(t.startswith("mlops.options") for t in graph[name]), name
