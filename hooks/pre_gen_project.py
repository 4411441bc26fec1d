"""Reject bad answers before anything is written. The rules live in the project's mlops.options."""
import json
import os
import sys
from pathlib import Path

ANSWERS = json.loads(r'''{{ cookiecutter | tojson }}''')
# The template checkout; cookiecutter passes it. A relative template path is relative to where the
# user started cookiecutter, not to this hook's working directory (the new project dir).
REPO_DIR = ANSWERS.get("_repo_dir", "")
if REPO_DIR and not os.path.isabs(REPO_DIR):
    REPO_DIR = os.path.join(os.environ.get("PWD", ""), REPO_DIR)
# cruft passes no _repo_dir, but both run hooks from inside the template checkout
# (cookiecutter.hooks.run_hook_from_repo_dir): that is the parent's working directory. Elsewhere
# than Linux, post_gen_project validates instead.
if not REPO_DIR:
    try:
        REPO_DIR = os.readlink(f"/proc/{os.getppid()}/cwd")
    except OSError:
        REPO_DIR = ""
PACKAGE_SRC = Path(REPO_DIR) / "{% raw %}{{cookiecutter.project_slug}}{% endraw %}" / "src"

if REPO_DIR and (PACKAGE_SRC / "mlops" / "hooks.py").is_file():
    sys.path.insert(0, str(PACKAGE_SRC))
    from mlops import hooks

    sys.exit(hooks.pre_gen(ANSWERS))
