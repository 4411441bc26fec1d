"""Generate cookiecutter.json and the README options table from mlops.options (the one source).

python scripts/sync_options.py          write both
python scripts/sync_options.py --check  exit 1 if either is out of date (a test runs this)
"""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "{{cookiecutter.project_slug}}" / "src"))
from mlops import options  # noqa: E402

BEGIN, END = "<!-- options:begin -->", "<!-- options:end -->"


def cookiecutter_json() -> str:
    return json.dumps(options.cookiecutter_json(), indent=2) + "\n"


def options_table() -> str:
    lines = ["| option | default / choices | what it sets |", "|---|---|---|"]
    for o in options.OPTIONS:
        default = (
            " / ".join(f"`{c}`" for c in o.choices) if o.choices else (f"`{o.default}`" if o.default else "(empty)")
        )
        lines.append(f"| `{o.name}` | {default} | {o.help} |")
    return "\n".join(lines)


def readme(text: str) -> str:
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n{options_table()}\n{END}{tail}"


def main(check: bool) -> int:
    targets = {ROOT / "cookiecutter.json": cookiecutter_json()}
    readme_path = ROOT / "README.md"
    if readme_path.exists() and BEGIN in readme_path.read_text():
        targets[readme_path] = readme(readme_path.read_text())
    stale = [p for p, text in targets.items() if not p.exists() or p.read_text() != text]
    if check:
        for p in stale:
            print(f"{p.name} is out of date: run python scripts/sync_options.py", file=sys.stderr)
        return 1 if stale else 0
    for p in stale:
        p.write_text(targets[p])
        print(f"wrote {p.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main("--check" in sys.argv[1:]))
