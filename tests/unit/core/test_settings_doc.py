from core.settings import PROJECT_ROOT
from core.settings_doc import render_into, settings_rows


def test_readme_configuration_table_matches_the_settings():
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert render_into(readme) == readme, "run `python -m core.settings_doc` to refresh the README table"


def test_every_setting_is_documented():
    undocumented = [env for env, _, description in settings_rows() if not description]
    assert undocumented == []
