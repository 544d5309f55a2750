"""Replays of the real-world fixtures in ../shared/fixtures: real issues of the reference newsletter,
AWS-signed SNS messages with their certificates, the SES developer guide's examples (their README says
where each comes from). They add cases to what the project's own fixtures already test; they are never
a condition for passing. Without the folder, the replay modules (``test_real_*.py``) are not collected and
``test_real_world_fixtures.py`` reports one skip line naming the folder.
"""

from __future__ import annotations

from pathlib import Path

from support.paths import SHARED_FIXTURES

# by name, not by the glob "test_real_*.py": that also matches test_real_world_fixtures.py, the module that
# must run to give the skip line
_REPLAYS = sorted(
    p.name for p in Path(__file__).parent.glob("test_real_*.py") if p.name != "test_real_world_fixtures.py"
)
collect_ignore = [] if SHARED_FIXTURES.is_dir() else _REPLAYS
