"""Reject bad answers before anything is written. The rules live in the project's mlops.options."""
import json
import sys
from pathlib import Path

ANSWERS = json.loads(r'''{{ cookiecutter | tojson }}''')
# The template checkout; cookiecutter passes it, cruft does not (then post_gen_project validates).
REPO_DIR = ANSWERS.get("_repo_dir", "")
PACKAGE_SRC = Path(REPO_DIR) / "{% raw %}{{cookiecutter.project_slug}}{% endraw %}" / "src"

if REPO_DIR and (PACKAGE_SRC / "mlops" / "options.py").is_file():
    sys.path.insert(0, str(PACKAGE_SRC))
    from mlops import hooks

    sys.exit(hooks.pre_gen(ANSWERS))
