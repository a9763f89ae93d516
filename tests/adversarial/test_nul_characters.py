"""NUL characters, which PostgreSQL text columns refuse, are a clear 4xx anywhere, never a 500."""

import pytest

pytestmark = [pytest.mark.django_db, pytest.mark.adversarial]

API_READS = [
    "/positions?symbol=A%00B",
    "/positions?strategy=%00&exchange=%00",
    "/stats?symbol=A%00B",
    "/stats?strategy=%00",
    "/signals?symbol=%00",
    "/orders?symbol=%00",
    "/market?symbol=%00",
]
CONSOLE_PAGES = [
    "/console/positions?symbol=A%00B",
    "/console/positions?strategy=%00",
    "/console/stats?symbol=%00",
    "/console/signals?symbol=%00",
    "/console/orders?symbol=%00",
]


@pytest.mark.parametrize("path", API_READS)
def test_api_filters_with_a_nul_character_never_fail_with_a_500(anon_client, path):
    assert anon_client.get(path).status_code < 500


@pytest.mark.parametrize("path", CONSOLE_PAGES)
def test_console_filters_with_a_nul_character_never_fail_with_a_500(client, operator, path):
    client.force_login(operator)
    assert client.get(path).status_code < 500
