"""Contract tests: schemathesis generates requests for every operation of the live app's OpenAPI schema
(uvicorn on loopback, real Redis ledger, real SQL, sandbox gateway), signed in as a holder with an
account and a card, and checks that no answer is a server error and that every answer matches the
documented status codes, content types and schemas. Bounded: a few examples per operation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from callcontrol.platform.redis_server import EmbeddedRedis
from tests.support.web import Phone, config, live_app, sign_up

CHECKS = [checks.not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
          checks.response_schema_conformance]
EXCLUDED = [checks.negative_data_rejection, checks.positive_data_acceptance, checks.missing_required_header,
            checks.unsupported_method, checks.use_after_free, checks.ensure_resource_availability,
            checks.ignored_auth, checks.response_headers_conformance]
EXAMPLES = 25


PHONE = Phone()
CALLS: list[str] = []


@pytest.fixture(scope="module")
def web_base(redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    sql = f"sqlite:///{Path(tmp_path_factory.mktemp('contract')) / 'web.sqlite3'}"
    with live_app(config(redis_server.url, sql, PHONE)) as url:
        yield url


@pytest.fixture(scope="module")
def token(web_base: str) -> str:
    """A holder with a verified account and a stored card, so the generated requests meet real data."""
    with httpx.Client(base_url=web_base) as c:
        token = sign_up(c, "contract@example.com")
        auth = {"Authorization": f"Bearer {token}"}
        claim = {"facility_id": "FAC-07", "number": "+13125550160"}
        assert c.post("/api/v1/accounts", json=claim, headers=auth).status_code == 202
        verified = c.post("/api/v1/accounts/verify", headers=auth,
                          json={**claim, "code": PHONE.last("+13125550160")})
        assert verified.status_code == 201
        card = c.post("/api/v1/payment-methods", headers={**auth, "Idempotency-Key": "contract-card"},
                      json={"number": "4111111111111111", "expiry": "12/30", "cvv": "123"})
        assert card.status_code == 201
        return token


def test_every_operation_keeps_its_contract(web_base: str, token: str) -> None:
    schema = schemathesis.openapi.from_url(f"{web_base}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:
        public = operation.path in ("/api/v1/signup", "/api/v1/tokens", "/api/v1/session")
        check(operation, {} if public else {"Authorization": f"Bearer {token}"})
    assert len(CALLS) > 10 * len(operations)       # the examples really ran


def check(operation: Any, headers: dict[str, str]) -> None:
    @given(case=operation.as_strategy())
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def holds(case: schemathesis.Case) -> None:
        CALLS.append(operation.path)
        case.call_and_validate(headers=headers, checks=CHECKS, excluded_checks=EXCLUDED)

    holds()
