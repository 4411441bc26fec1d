"""Your parameters file is valid and expands to as many configurations as it promises."""

import json

from conftest import ROOT
from mlops import params


def test_the_shipped_file_is_valid():
    configurations = params.expand(params.validate(ROOT / "params" / "parameters.json"))
    assert len(configurations) == params.count(json.loads((ROOT / "params" / "parameters.json").read_text()))
