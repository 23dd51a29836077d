"""Every command that needs Settings answers a bad configuration the same way: the field and
the bad value on stderr and exit code 2 (not a traceback, not another command's own error)."""

import pytest
from typer.testing import CliRunner

from cli.main import app


@pytest.mark.parametrize(
    "command",
    [["sql", "SELECT 1"], ["report"], ["warehouse", "load"], ["warehouse", "migrate"], ["lake", "status"],
     ["reprocess", "--all"], ["kafka", "topics"]],
)  # fmt: skip
def test_a_bad_setting_is_named_and_exits_2(command):
    result = CliRunner().invoke(app, command, env={"LAKEHOUSE_API__PORT": "not-a-port"})
    assert result.exit_code == 2, result.output
    assert "configuration error" in result.output and "api.port" in result.output
    assert "query failed" not in result.output
