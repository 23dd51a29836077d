"""Renders the configuration table of the README from the Settings tree itself."""

from __future__ import annotations

from pydantic import BaseModel, SecretStr

from core.settings import PROJECT_ROOT, Settings


def _default(value: object) -> str:
    if isinstance(value, SecretStr):
        return "(dev secret)" if value.get_secret_value() else '""'
    text = str(value)
    text = text.replace(str(PROJECT_ROOT), "<checkout>").replace(str(PROJECT_ROOT.home()), "~")
    return text if text else '""'


def settings_rows() -> list[tuple[str, str, str]]:
    """(environment variable, default, description) for every leaf setting."""
    rows = []
    defaults = Settings.model_construct()
    for section_name, field in Settings.model_fields.items():
        section = getattr(defaults, section_name, field.default)
        if isinstance(section, BaseModel):
            for leaf_name, leaf in type(section).model_fields.items():
                env = f"LAKEHOUSE_{section_name.upper()}__{leaf_name.upper()}"
                rows.append((env, _default(getattr(section, leaf_name)), leaf.description or ""))
        else:
            rows.append((f"LAKEHOUSE_{section_name.upper()}", _default(field.default), field.description or ""))
    return rows


def settings_markdown() -> str:
    lines = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    lines += [f"| `{env}` | `{default}` | {desc} |" for env, default, desc in settings_rows()]
    return "\n".join(lines) + "\n"


START, END = "<!-- settings-table:start -->", "<!-- settings-table:end -->"


def render_into(readme: str) -> str:
    """The README text with the table between the markers replaced by the current one."""
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{settings_markdown()}{END}{tail}"


if __name__ == "__main__":
    path = PROJECT_ROOT / "README.md"
    path.write_text(render_into(path.read_text()))
    print(f"updated the configuration table in {path}")
