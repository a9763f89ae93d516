"""The OpenAPI request bodies are generated from the serializers that validate them: they cannot drift.

docs/CONTRACT.md describes the wire contract; `/api/schema` is its machine-readable form.
"""

import pytest
from drf_spectacular.generators import SchemaGenerator

from oms.api.serializers import (
    CloseAllSerializer,
    OrderCreateSerializer,
    PositionSettleSerializer,
    SwitchSetSerializer,
)
from oms.api.strategies import StrategyControlSetSerializer
from oms.signal_input import BounceSignalSerializer, ExitSignalSerializer, StopSignalSerializer

REQUEST_BODIES = [
    ("/signals/bounce/", "post", BounceSignalSerializer),
    ("/signals/exit/", "post", ExitSignalSerializer),
    ("/signals/stop/", "post", StopSignalSerializer),
    ("/orders/", "post", OrderCreateSerializer),
    ("/oms/switch/", "post", SwitchSetSerializer),
    ("/positions/close-all/", "post", CloseAllSerializer),
    ("/positions/{position_id}/settle/", "post", PositionSettleSerializer),
    ("/oms/strategies/{strategy}/", "post", StrategyControlSetSerializer),
]


@pytest.fixture(scope="module")
def schema():
    return SchemaGenerator().get_schema(request=None, public=True)


def request_component(schema: dict, path: str, method: str) -> dict:
    ref = schema["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    return schema["components"]["schemas"][ref.rsplit("/", 1)[-1]]


@pytest.mark.parametrize("path,method,serializer_class", REQUEST_BODIES, ids=[p for p, _, _ in REQUEST_BODIES])
def test_each_request_body_in_the_schema_is_its_serializer(schema, path, method, serializer_class):
    component = request_component(schema, path, method)
    fields = {name: field for name, field in serializer_class().fields.items() if not field.read_only}
    assert set(component["properties"]) == set(fields)
    assert set(component.get("required", [])) == {name for name, field in fields.items() if field.required}
    nullable = {name for name, prop in component["properties"].items() if prop.get("nullable")}
    assert nullable == {name for name, field in fields.items() if field.allow_null}


def test_the_signal_body_documents_every_field_the_bot_may_send(schema):
    properties = request_component(schema, "/signals/bounce/", "post")["properties"]
    assert {"symbol", "side", "price", "timestamp", "exit_strategy", "signal_id", "qty"} <= set(properties)
    assert properties["timestamp"]["format"] == "date-time"
    assert properties["price"]["type"] == "number"
    assert properties["timeframe_min"]["type"] == "integer"
    exit_strategy = schema["components"]["schemas"][properties["exit_strategy"]["$ref"].rsplit("/", 1)[-1]]
    assert {"tp_sl_static", "tp_sl_trailing_v1"} <= set(exit_strategy["enum"])


def test_the_exit_and_stop_bodies_document_their_fields(schema):
    exit_body = request_component(schema, "/signals/exit/", "post")["properties"]
    assert {"position_id", "symbol", "side", "strategy", "exchange", "fraction", "signal_id", "timestamp"} <= set(
        exit_body
    )
    assert exit_body["fraction"]["type"] == "number" and exit_body["position_id"]["type"] == "integer"
    stop_body = request_component(schema, "/signals/stop/", "post")["properties"]
    assert {"number", "string"} == {choice["type"] for choice in stop_body["sl_price"]["oneOf"]}
    assert stop_body["allow_loosen"]["type"] == "boolean"


def test_no_request_body_is_declared_by_hand(schema):
    """Every JSON request body in the schema is one of the serializers above (no inline copy to drift)."""
    declared = {
        (path, method)
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if operation.get("requestBody")
    }
    assert declared == {(path, method) for path, method, _ in REQUEST_BODIES}


def test_docs_contract_describes_every_api_path(schema):
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    contract = (root / "docs" / "CONTRACT.md").read_text()
    for path in schema["paths"]:
        documented = path.rstrip("/").replace("{position_id}", "{id}")
        assert f"`{documented}" in contract or f" {documented}`" in contract or f"{documented}?" in contract, path


def test_the_code_cites_the_contract_in_the_repository_not_an_outside_spec():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    cited = [
        str(p.relative_to(root))
        for folder in ("oms", "risk", "pricing", "lomsite", "tests", "docs", "bench")
        for p in (root / folder).rglob("*")
        if p.suffix in {".py", ".md", ".html"}
        and re.search(r"SPEC\s*§", p.read_text(encoding="utf-8", errors="replace"))
    ]
    assert cited == []
