"""Schemathesis against the project's own OpenAPI schema: every operation, with and without a token.

No generated request may produce a 5xx, and every documented response must match its schema
(and its content type). The schema is the one `/api/schema` serves, built by drf-spectacular.
"""

from __future__ import annotations

import pytest
import schemathesis
from django.contrib.auth.models import Group, User
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings
from schemathesis.checks import content_type_conformance, not_a_server_error, response_schema_conformance

from apitokens.models import ApiToken
from lomsite.wsgi import application

CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]
FUZZ = settings(
    max_examples=10, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
)

schema = schemathesis.openapi.from_dict(SchemaGenerator().get_schema(request=None, public=True))
schema.app = application


@pytest.fixture
def served_in_process(db, settings):
    """The WSGI app called directly, with the paper rules (no anonymous API) and no network."""
    settings.API_ALLOW_ANONYMOUS = False
    settings.ALLOWED_HOSTS = ["*"]
    settings.PRICE_SOURCE = "simulator"
    # As Django's test client does: a request must not close the test's database connection.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def operator_token() -> str:
    user, _ = User.objects.get_or_create(username="fuzz-operator")
    user.groups.add(Group.objects.get(name="operator"))
    return ApiToken.issue(user)


@schema.parametrize()
@FUZZ
def test_no_operation_answers_5xx_or_breaks_its_schema_for_an_operator(case, served_in_process):
    case.call_and_validate(headers={"Authorization": f"Token {operator_token()}"}, checks=CHECKS)


@schema.parametrize()
@FUZZ
def test_no_operation_answers_5xx_or_breaks_its_schema_for_an_anonymous_caller(case, served_in_process):
    response = case.call_and_validate(checks=CHECKS)
    if case.path.rstrip("/") != "/health":
        assert not 200 <= response.status_code < 300, (case.method, case.path, response.status_code)
