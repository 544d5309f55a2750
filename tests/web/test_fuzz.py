"""Fuzzing the app under uvicorn: schemathesis generates requests from the app's own OpenAPI schema (every
route, valid and invalid by the schema), and Hypothesis throws arbitrary bodies, content types and
tokens at the form routes and the webhook. No answer may be a 5xx."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = [pytest.mark.slow]

FUZZ = settings(
    max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None
)


def test_no_generated_request_gets_a_server_error(live_web):
    schema = schemathesis.openapi.from_url(f"{live_web.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10  # every route of the app is in its schema
    for operation in operations:

        @given(case=operation.as_strategy())
        @FUZZ
        def no_server_error(case: schemathesis.Case) -> None:
            response = case.call(timeout=30)
            assert response.status_code < 500, (
                case.method,
                case.path,
                response.status_code,
                response.text[:300],
            )

        no_server_error()


FORM_PATHS = [
    "/subscribe",
    "/preferences",
    "/unsubscribe/1.a.AAAAAAAAAAAAAAAAAAAAAA",
    "/confirm/x",
    "/preferences/x",
]
CONTENT_TYPES = [
    "application/x-www-form-urlencoded",
    "multipart/form-data",
    "multipart/form-data; boundary=zzz",
    "text/plain",
    "application/json",
    "application/x-www-form-urlencoded; charset=gb2312",
]


@given(
    path=st.sampled_from([*FORM_PATHS, "/webhooks/ses"]),
    content_type=st.sampled_from(CONTENT_TYPES),
    body=st.binary(max_size=2000) | st.text(max_size=500).map(lambda t: t.encode("utf-8", "surrogatepass")),
    origin=st.sampled_from([None, "null", "https://evil.example"]),
)
@FUZZ
def test_arbitrary_bodies_on_the_form_routes_and_the_webhook_never_get_a_5xx(
    live_web, path, content_type, body, origin
):
    headers = {"content-type": content_type, "x-amz-sns-message-type": "Notification"}
    if origin:
        headers["origin"] = origin
    response = live_web.client.post(path, content=body, headers=headers)
    assert response.status_code < 500, (path, content_type, body[:100], response.status_code)


@given(
    token=st.text(min_size=1, max_size=120).filter(lambda t: "/" not in t and "?" not in t and "#" not in t)
)
@FUZZ
def test_arbitrary_tokens_in_links_never_get_a_5xx(live_web, token):
    from urllib.parse import quote

    for template in ("/preferences/{}", "/unsubscribe/{}", "/confirm/{}", "/view/1/{}", "/issues/{}"):
        response = live_web.client.get(template.format(quote(token, safe="")))
        assert response.status_code < 500, (template, token, response.status_code)
