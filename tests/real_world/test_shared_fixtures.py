"""tests/real_world replays the real-world fixtures in ../shared/fixtures: real issues of the reference
newsletter, AWS-signed SNS messages with their certificates, the SES developer guide's examples (their
README says where each comes from). They add cases to what the project's own fixtures test already; they
are never a condition for passing. Without the folder the replay modules (``test_real_*.py``) are not
collected (tests/conftest.py) and this module reports the one skip line that names the folder; with it,
this checks that it holds what the replay reads (a renamed folder fails instead of replaying nothing).
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
