"""Fuzzing the admin API with a valid token: schemathesis generates requests (valid and invalid by the
schema) for every /api/ operation of the app's OpenAPI schema, on a list with readers and campaigns in
it. Authenticated bad input is still a 4xx, never a 5xx."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from support.paths import REFERENCE_ISSUE

from mailer.services import admins, drafts, lifecycle
from subscribers.db import utcnow
from subscribers.preferences import add_subscriber

pytestmark = [pytest.mark.slow]

FUZZ = settings(
    max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None
)


def test_no_authenticated_request_gets_a_server_error(live_web):
    with live_web.env.transaction() as session:
        admins.create_user(session, "fuzzer", "a fuzzing password", now=datetime.now(UTC))
        token = admins.create_token(session, "fuzzer", "fuzz", now=datetime.now(UTC)).secret
        for n in range(5):
            add_subscriber(session, f"f{n}@example.org", topics=["nova"], source="test", now=utcnow())
        draft = drafts.read_draft(live_web.env, REFERENCE_ISSUE)
        lifecycle.create(session, draft, now=datetime.now(UTC))
    schema = schemathesis.openapi.from_url(f"{live_web.url}/openapi.json")
    operations = [op for op in (r.ok() for r in schema.get_all_operations()) if op.path.startswith("/api/")]
    assert len(operations) >= 16
    headers = {"authorization": f"Bearer {token}"}
    statuses: dict[int, int] = {}
    for operation in operations:

        @given(case=operation.as_strategy())
        @FUZZ
        def no_server_error(case: schemathesis.Case) -> None:
            response = case.call(headers=headers, timeout=60)
            assert response.status_code < 500, (
                case.method, case.path, case.path_parameters, case.query, response.status_code,
                response.text[:300],
            )  # fmt: skip
            assert response.status_code != 401, (case.method, case.path)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

        no_server_error()
    # the generator reached the routes' work, not only their validation
    assert (
        sum(statuses.values()) >= 10 * len(operations)
        and sum(statuses.get(c, 0) for c in (200, 201, 202, 204)) >= 20
    ), statuses
