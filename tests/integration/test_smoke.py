"""Each part of the stack, exercised once against the real service (the same checks `make smoke` runs)."""

import pytest

from cli.smoke import CHECKS

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(("name", "check"), CHECKS, ids=[name for name, _ in CHECKS])
def test_stack_part_works(name, check, settings, stack, run_id):
    detail = check(settings, run_id)
    assert detail
