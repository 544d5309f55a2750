"""The one place that says whether the real-world replay runs: a skip line naming the folder, or a check
that the folder holds what the replay modules read (so a renamed folder fails instead of replaying nothing).
"""

from __future__ import annotations

import pytest
from support.paths import REAL_WORLD_MISSING, SHARED_FIXTURES, real_issues


def test_the_real_world_fixtures_are_there_to_replay() -> None:
    if not SHARED_FIXTURES.is_dir():
        pytest.skip(REAL_WORLD_MISSING)
    assert real_issues(), "no issues in ../shared/fixtures/issues"
    assert sorted((SHARED_FIXTURES / "sns").glob("*.json")), "no signed SNS messages"
    assert sorted((SHARED_FIXTURES / "sns" / "certs").glob("*.pem")), "no SNS certificates"
    assert sorted((SHARED_FIXTURES / "ses").glob("*.json")), "no SES examples"
