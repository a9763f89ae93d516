"""The REST API: one small view per action, each calling a service or selector."""

from __future__ import annotations

import re

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import generics, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from apitokens.authentication import HashedTokenAuthentication
from oms.api.filters import OrderFilter, PositionFilter, SignalFilter
from oms.api.hmac_auth import SignalHmacAuthentication
from oms.api.serializers import (
    CloseAllSerializer,
    OrderCreateSerializer,
    OrderSerializer,
    PositionSerializer,
    PositionSettleSerializer,
    SignalSerializer,
    StatsQuerySerializer,
    SwitchSetSerializer,
)
from oms.exceptions import PositionNotFound
from oms.models import OperatorSource, SignalKind, SwitchSource
from oms.selectors import (
    book_stats,
    cached_over_book,
    order_list,
    position_list,
    signal_list,
    stats_with_equity,
)
from oms.services.exit_signals import exit_signal_ingest, stop_signal_ingest
from oms.services.health import health_report
from oms.services.operator_audit import Operator
from oms.services.positions import (
    PositionRequest,
    position_close_at_market,
    positions_close_all,
)
from oms.services.settle import position_settle
from oms.services.signals import order_open, signal_ingest, signal_reject_unreadable
from oms.services.switch import oms_switch_set, switch_state
from oms.signal_input import BounceSignalSerializer, ExitSignalSerializer, StopSignalSerializer
from pricing.quotes import QuoteError
from pricing.sources import get_price_source

MAX_ID = 2**63 - 1  # the largest primary key any backend stores
ASCII_ID = re.compile(r"[0-9]{1,19}")


class StandardPagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class SignalIntakeApi(APIView):
    """A bot signal endpoint: token, session or HMAC; `oms.trade`; every body, readable or not, recorded."""

    signal_endpoint = True  # error bodies carry "received": false
    write_permission = "oms.trade"
    authentication_classes = [SignalHmacAuthentication, HashedTokenAuthentication, SessionAuthentication]
    ingest = staticmethod(signal_ingest)
    kind = SignalKind.ENTRY

    def post(self, request):
        # Unreadable bodies are rejected signals too: recorded (with the start of the raw text) and audited.
        try:
            raw = request._request.body  # read once, within DATA_UPLOAD_MAX_MEMORY_SIZE
        except RequestDataTooBig:
            size = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            errors = {"body": [f"Larger than the {size} bytes accepted."]}
            result = signal_reject_unreadable(raw=b"", errors=errors, kind=self.kind)
            return Response(result.body, status=result.status_code)
        try:
            payload = request.data
        except ParseError as exc:
            errors = {"body": [f"Must be a JSON object ({exc.detail})."]}
            result = signal_reject_unreadable(raw=raw, errors=errors, kind=self.kind)
        else:
            result = self.ingest(payload=payload, idempotency_key=request.headers.get("Idempotency-Key"))
        return Response(result.body, status=result.status_code)


# The request bodies are documented from the serializers that validate them, so the two cannot drift
# (oms/tests/test_openapi_contract.py); docs/CONTRACT.md §2 and §2a describe the fields.
@extend_schema_view(
    post=extend_schema(
        request=BounceSignalSerializer,
        responses={200: OpenApiTypes.OBJECT, 400: OpenApiTypes.OBJECT, 503: OpenApiTypes.OBJECT},
    )
)
class SignalBounceApi(SignalIntakeApi):
    """Entry signal from the bot (docs/CONTRACT.md §2). Always 200 when understood; 400 with field errors."""


@extend_schema_view(
    post=extend_schema(
        request=ExitSignalSerializer,
        responses={
            200: OpenApiTypes.OBJECT,
            400: OpenApiTypes.OBJECT,
            502: OpenApiTypes.OBJECT,
            503: OpenApiTypes.OBJECT,
        },
    )
)
class SignalExitApi(SignalIntakeApi):
    """Exit signal: close the named open position, or a fraction of it (docs/CONTRACT.md §2a)."""

    ingest = staticmethod(exit_signal_ingest)
    kind = SignalKind.EXIT


@extend_schema_view(
    post=extend_schema(
        request=StopSignalSerializer,
        responses={200: OpenApiTypes.OBJECT, 400: OpenApiTypes.OBJECT, 502: OpenApiTypes.OBJECT},
    )
)
class SignalStopApi(SignalIntakeApi):
    """Stop signal: move the stop loss of the named open position (docs/CONTRACT.md §2a)."""

    ingest = staticmethod(stop_signal_ingest)
    kind = SignalKind.STOP


class HealthApi(APIView):
    """Open to anyone; an anonymous caller gets the state and reasons, an authenticated one the details."""

    permission_classes = [AllowAny]
    authentication_classes = [HashedTokenAuthentication, SessionAuthentication]

    @extend_schema(responses={200: OpenApiTypes.OBJECT, 503: OpenApiTypes.OBJECT})
    def get(self, request):
        report = health_report(details=bool(request.user and request.user.is_authenticated))
        unavailable = report["status"] == "error"  # degraded still answers 200, with its reasons
        return Response(report, status=status.HTTP_503_SERVICE_UNAVAILABLE if unavailable else status.HTTP_200_OK)


class StatsApi(APIView):
    @extend_schema(parameters=[StatsQuerySerializer], responses={200: OpenApiTypes.OBJECT})
    def get(self, request):
        query = StatsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        filters = dict(query.validated_data)
        group_by = filters.pop("group_by", None)
        key = sorted(filters.items())
        if group_by:
            groups = cached_over_book(f"stats:{group_by}", lambda: book_stats(filters, group_by), key)
            return Response({"group_by": group_by, "groups": groups})
        return Response(cached_over_book("stats", lambda: stats_with_equity(filters), key))


class PositionListApi(generics.ListAPIView):
    serializer_class = PositionSerializer
    filterset_class = PositionFilter
    pagination_class = StandardPagination
    queryset = position_list()


class PositionCloseApi(APIView):
    write_permission = "oms.close_position"

    @extend_schema(
        request=None,
        parameters=[OpenApiParameter("position_id", int, OpenApiParameter.PATH)],
        responses={200: PositionSerializer, 404: OpenApiTypes.OBJECT},
    )
    def post(self, request, position_id: str):
        # ASCII digits only: str.isdigit() accepts "²" (int() then fails: a 500) and int() reads "١٠" as 10.
        if not ASCII_ID.fullmatch(position_id) or int(position_id) > MAX_ID:
            raise PositionNotFound(f"position {position_id[:30]} does not exist")
        reason = request.data.get("reason", "") if isinstance(request.data, dict) else ""
        operator = Operator.from_request(request, OperatorSource.API, reason if isinstance(reason, str) else "")
        result = position_close_at_market(position_id=int(position_id), operator=operator)
        return Response({**PositionSerializer(result.position).data, "closed_now": result.closed_now})


class PositionSettleApi(APIView):
    """A stuck position (no usable price for its symbol): close it at a given price or void it."""

    write_permission = "oms.close_position"

    @extend_schema(
        request=PositionSettleSerializer,
        parameters=[OpenApiParameter("position_id", int, OpenApiParameter.PATH)],
        responses={200: PositionSerializer, 404: OpenApiTypes.OBJECT, 409: OpenApiTypes.OBJECT},
    )
    def post(self, request, position_id: str):
        if not ASCII_ID.fullmatch(position_id) or int(position_id) > MAX_ID:
            raise PositionNotFound(f"position {position_id[:30]} does not exist")
        form = PositionSettleSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        operator = Operator.from_request(request, OperatorSource.API, data["reason"])
        result = position_settle(
            position_id=int(position_id), price=data.get("price"), void=data["void"], operator=operator
        )
        return Response({**PositionSerializer(result.position).data, "closed_now": result.closed_now})


class PositionCloseAllApi(APIView):
    """Panic: close every open position at the current price (reason `panic`)."""

    write_permission = "oms.close_position"

    @extend_schema(request=CloseAllSerializer, responses={200: OpenApiTypes.OBJECT})
    def post(self, request):
        form = CloseAllSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        operator = Operator.from_request(request, OperatorSource.API, form.validated_data.get("reason", ""))
        result = positions_close_all(operator=operator)
        return Response(
            {
                "closed": len(result.closed),
                "closed_ids": [p.pk for p in result.closed],
                "failed": result.failed,
                "failed_positions": result.failed_positions,
            }
        )


class OrderListCreateApi(generics.ListAPIView):
    serializer_class = OrderSerializer
    filterset_class = OrderFilter
    pagination_class = StandardPagination
    queryset = order_list()
    write_permission = "oms.create_order"  # operators only; the bot sends signals (`oms.trade`)

    @extend_schema(request=OrderCreateSerializer, responses={201: OrderSerializer})
    def post(self, request):
        form = OrderCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        opened = order_open(
            actor=request.user.get_username(),
            payload=request.data,
            request=PositionRequest(
                symbol=data["symbol"],
                side=data["side"],
                qty=data["qty"],
                entry_price=data["entry_price"],
                tp_price=data.get("tp_price"),
                sl_price=data.get("sl_price"),
                exchange=data.get("exchange") or settings.DEFAULT_EXCHANGE,
                strategy=data.get("strategy", ""),
                exit_strategy=settings.DEFAULT_EXIT_STRATEGY,
            ),
        )
        if settings.BROKER_MODE != "paper":  # BROKER (#11): the order goes to the exchange after the commit
            from oms.services.execution import entry_send

            entry_send(opened.order)
            opened.order.refresh_from_db()
        body = {**OrderSerializer(opened.order).data, "position_id": opened.position.pk}
        return Response(body, status=status.HTTP_201_CREATED)


class SignalListApi(generics.ListAPIView):
    serializer_class = SignalSerializer
    filterset_class = SignalFilter
    pagination_class = StandardPagination
    queryset = signal_list()


class MarketApi(APIView):
    @extend_schema(parameters=[OpenApiParameter("symbol", str, required=True)], responses={200: OpenApiTypes.OBJECT})
    def get(self, request):
        symbol = (request.query_params.get("symbol") or "").strip().upper()
        if not symbol:
            raise ValidationError({"symbol": ["This query parameter is required."]})
        source = get_price_source()
        try:
            quote = source.get_quote(symbol)
        except QuoteError as exc:
            return Response(
                {"error": "price_unavailable", "detail": str(exc), "symbol": symbol},
                status=status.HTTP_503_SERVICE_UNAVAILABLE,
            )
        return Response({**quote.as_dict(), "mode": settings.PRICE_MODE, "price_source": settings.PRICE_SOURCE})


class SwitchApi(APIView):
    """The OMS switch: GET its state, POST `{"enabled": false, "reason": "…"}` to flip it."""

    write_permission = "oms.change_switch"

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request):
        return Response(_switch_body(switch_state()))

    @extend_schema(request=SwitchSetSerializer, responses={200: OpenApiTypes.OBJECT})
    def post(self, request):
        form = SwitchSetSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        user = request.user if getattr(request.user, "pk", None) else None
        state = oms_switch_set(
            enabled=form.validated_data["enabled"],
            reason=form.validated_data["reason"],
            actor=str(request.user) if user else "anonymous (dev)",
            source=SwitchSource.API,
            user=user,
        )
        return Response(_switch_body(state))


def _switch_body(state) -> dict:
    return {
        "oms_enabled": state.enabled,
        "switch_on": state.switch_on,
        "forced_off_by_env": state.forced_off_by_env,
        "changed_by": state.changed_by,
        "changed_at": state.changed_at,
        "reason": state.reason,
    }
