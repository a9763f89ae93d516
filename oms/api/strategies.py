"""Per-strategy control over the API (issue #12 §5; docs/CONTRACT.md): list, read, change.

Reads need a login or token like every read; a change needs `oms.change_switch`, like the global
switch (`POST /oms/switch`), and goes through the same service as the console and the command.
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from oms.models import OperatorSource
from oms.services.operator_audit import Operator
from oms.services.strategies import LIMIT_FIELDS, strategy_control_set, strategy_get, strategy_list
from oms.signal_input import StrictCharField, StrictIntegerField, StrictNumberField

MAX_COUNT = 2**31 - 1  # the column's largest value (PositiveIntegerField)
STRATEGY_PARAMETER = OpenApiParameter(
    "strategy",
    OpenApiTypes.STR,
    OpenApiParameter.PATH,
    description="the strategy's name exactly as signals send it (URL-encoded), e.g. bounce_ema10_strict",
)


class StrategyControlSetSerializer(serializers.Serializer):
    """`POST /oms/strategies/{strategy}`: the fields given change, the others stay; null clears a limit."""

    enabled = serializers.BooleanField(
        required=False, help_text="false: the strategy's new positions are refused; true: allowed again"
    )
    max_open_positions = StrictIntegerField(
        required=False,
        allow_null=True,
        min_value=0,
        max_value=MAX_COUNT,
        help_text="open positions of this strategy at most (null: no limit of its own)",
    )
    max_positions_per_day = StrictIntegerField(
        required=False,
        allow_null=True,
        min_value=0,
        max_value=MAX_COUNT,
        help_text="positions this strategy opens per UTC day at most (null: no limit of its own)",
    )
    max_exposure_usdt = StrictNumberField(
        required=False,
        allow_null=True,
        help_text="open notional (entry × qty) of this strategy at most, in USDT (null: no limit of its own)",
    )
    reason = StrictCharField(max_length=500, help_text="why (required; recorded in the operator audit)")

    def to_internal_value(self, data):
        # A JSON boolean only: DRF's BooleanField would read "no", 0 or "false" as false.
        if isinstance(data, dict) and "enabled" in data and not isinstance(data["enabled"], bool):
            raise serializers.ValidationError({"enabled": ["Must be a JSON boolean."]})
        return super().to_internal_value(data)


class StrategyListApi(APIView):
    """Every strategy that has positions or a control row: its switch, limits and figures now."""

    @extend_schema(operation_id="oms_strategies_list", responses={200: OpenApiTypes.OBJECT})
    def get(self, request):
        strategies = [view.as_dict() for view in strategy_list()]
        return Response({"count": len(strategies), "results": strategies})


class StrategyControlApi(APIView):
    """One strategy: GET its switch, limits and figures (also for one never seen: on, no limits);
    POST `{"enabled": false, "reason": "…"}` or limits to change them."""

    write_permission = "oms.change_switch"

    @extend_schema(
        operation_id="oms_strategy_retrieve",
        parameters=[STRATEGY_PARAMETER],
        responses={200: OpenApiTypes.OBJECT, 400: OpenApiTypes.OBJECT},
    )
    def get(self, request, strategy: str):
        return Response(strategy_get(strategy).as_dict())

    @extend_schema(
        operation_id="oms_strategy_update",
        parameters=[STRATEGY_PARAMETER],
        request=StrategyControlSetSerializer,
        responses={200: OpenApiTypes.OBJECT, 400: OpenApiTypes.OBJECT},
    )
    def post(self, request, strategy: str):
        form = StrategyControlSetSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        row = strategy_control_set(
            strategy=strategy,
            operator=Operator.from_request(request, OperatorSource.API, data["reason"]),
            **{field: data[field] for field in ("enabled", *LIMIT_FIELDS) if field in data},
        )
        return Response(strategy_get(row.strategy).as_dict())
