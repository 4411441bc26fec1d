"""Finish the rendered project; the logic lives in its own mlops package (mlops.hooks)."""
import json
import sys
from pathlib import Path

ANSWERS = json.loads(r'''{{ cookiecutter | tojson }}''')

sys.path.insert(0, str(Path.cwd() / "src"))
from mlops import hooks  # noqa: E402

sys.exit(hooks.post_gen(Path.cwd(), ANSWERS))
