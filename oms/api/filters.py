from __future__ import annotations

from datetime import UTC

import django_filters
from django.core.exceptions import ValidationError
from django_filters.fields import IsoDateTimeField

from oms.models import Order, Position, PositionStatus, Side, Signal, SignalKind, SignalOutcome


class UtcIsoDateTimeField(IsoDateTimeField):
    """An ISO-8601 date-time, converted to UTC: PostgreSQL refuses offsets beyond ±15:59 that Python
    accepts (a 500 found by the schemathesis run), and a year-1 time with an offset may not exist in UTC."""

    def to_python(self, value):
        parsed = super().to_python(value)
        if parsed is None:
            return parsed
        try:
            return parsed.astimezone(UTC)
        except OverflowError:
            raise ValidationError("Date-time out of range.", code="invalid") from None


class UtcIsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UtcIsoDateTimeField


class UpperCharFilter(django_filters.CharFilter):
    def filter(self, qs, value):
        return super().filter(qs, value.upper() if value else value)


class PositionFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=PositionStatus.choices)
    side = django_filters.ChoiceFilter(choices=Side.choices)
    symbol = UpperCharFilter()
    strategy = django_filters.CharFilter()
    exchange = django_filters.CharFilter()
    account_label = django_filters.CharFilter()
    since = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    until = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Position
        fields = ["status", "side", "symbol", "strategy", "exchange", "account_label", "since", "until"]


class OrderFilter(django_filters.FilterSet):
    symbol = UpperCharFilter()
    since = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    until = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Order
        fields = ["symbol", "status", "purpose", "position", "since", "until"]


class SignalFilter(django_filters.FilterSet):
    outcome = django_filters.ChoiceFilter(choices=SignalOutcome.choices)
    kind = django_filters.ChoiceFilter(choices=SignalKind.choices)
    symbol = UpperCharFilter()
    since = UtcIsoDateTimeFilter(field_name="received_at", lookup_expr="gte")
    until = UtcIsoDateTimeFilter(field_name="received_at", lookup_expr="lt")

    class Meta:
        model = Signal
        fields = ["outcome", "kind", "symbol", "since", "until"]
