from __future__ import annotations

import django_filters

from oms.models import Order, Position, PositionStatus, Side, Signal, SignalOutcome


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
    since = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    until = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Position
        fields = ["status", "side", "symbol", "strategy", "exchange", "account_label", "since", "until"]


class OrderFilter(django_filters.FilterSet):
    symbol = UpperCharFilter()
    since = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    until = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Order
        fields = ["symbol", "status", "purpose", "position", "since", "until"]


class SignalFilter(django_filters.FilterSet):
    outcome = django_filters.ChoiceFilter(choices=SignalOutcome.choices)
    symbol = UpperCharFilter()
    since = django_filters.IsoDateTimeFilter(field_name="received_at", lookup_expr="gte")
    until = django_filters.IsoDateTimeFilter(field_name="received_at", lookup_expr="lt")

    class Meta:
        model = Signal
        fields = ["outcome", "symbol", "since", "until"]
