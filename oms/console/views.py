"""Console pages. Thin: they read through selectors and act through the same services as the API."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods

from oms.console.charts import equity_chart
from oms.console.forms import (
    CLOSE_ALL_PHRASE,
    POSITION_SORTS,
    AuditFilterForm,
    CloseAllForm,
    OrderFilterForm,
    PositionFilterForm,
    SettleForm,
    SignalFilterForm,
    StatsFilterForm,
    StopMoveForm,
    SwitchForm,
)
from oms.console.templatetags import money, price
from oms.exceptions import (
    ExchangeStopFailed,
    PositionCloseFailed,
    PositionNotFound,
    PriceUnavailable,
    SettleRefused,
)
from oms.models import (
    CloseReason,
    NotificationStatus,
    OmsControl,
    OmsSwitchChange,
    OperatorSource,
    Position,
    SwitchSource,
)
from oms.selectors import (
    book_overview,
    book_stats,
    cached_over_book,
    epoch_equity,
    notification_list,
    open_book,
    operator_action_list,
    order_list,
    position_closed_by,
    position_funding_list,
    position_get,
    positions_filtered,
    signal_list,
    signals_latest,
    switch_history,
    switch_last_change,
)
from oms.services.health import health_report
from oms.services.marks import positions_marks
from oms.services.operator_audit import Operator
from oms.services.positions import position_close_at_market, positions_close_all
from oms.services.settle import SettleInvalid, position_settle
from oms.services.stops import position_stop_move
from oms.services.switch import oms_switch_set, switch_state
from oms.services.trips import TripLimits, trip_figures

PAGE_SIZE = 50
LIVE_HEADER = "X-Live-Fragment"
BREAKDOWNS = (("symbol", "By symbol"), ("strategy", "By strategy"), ("exchange", "By exchange"), ("day", "By day"))


def console_view(view: Callable) -> Callable:
    """Logged in (else to the login page) and allowed to read the book (else 403)."""
    return login_required(permission_required("oms.view_position", raise_exception=True)(view))


def operator_action(permission: str) -> Callable:
    def decorate(view: Callable) -> Callable:
        return console_view(permission_required(permission, raise_exception=True)(view))

    return decorate


def _live_or_page(request: HttpRequest, page: str, fragment: str, context: dict) -> HttpResponse:
    """The whole page, or only its live part when the page's refresh script asks for it."""
    if request.headers.get(LIVE_HEADER):
        response = render(request, fragment, context)
        response["Cache-Control"] = "no-store"
        return response
    return render(request, page, {**context, "live_fragment": fragment})


def _safe_next(request: HttpRequest, default: str) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return target
    return default


def _book_cached(name: str, compute: Callable[[], object], *extra: object) -> object:
    return cached_over_book(f"console:{name}", compute, *extra)


def _overview_figures(limits: TripLimits, last_change: OmsSwitchChange | None, epoch: str | None = None) -> dict:
    def compute() -> dict:
        figures = book_overview(epoch)
        stats = figures["stats"]
        return {
            "stats": stats,
            "equity": figures["equity"],
            "other_exits": stats["closed_positions"] - stats["tp_count"] - stats["sl_count"],
            "chart": equity_chart(figures["curve"]),
            "trip_figures": trip_figures(limits=limits) if limits.any else None,
        }

    # The trip figures also depend on the day and on when the switch was last turned on.
    return _book_cached("overview", compute, limits, last_change and last_change.pk, timezone.now().date())


@console_view
def overview(request: HttpRequest) -> HttpResponse:
    limits = TripLimits.from_settings()
    last_change = switch_last_change()
    control = OmsControl.load()  # read once: the switch and the current epoch
    switch = switch_state(control)
    context = {
        "health": health_report(switch=switch),
        "switch": switch,
        "last_change": last_change,
        **_overview_figures(limits, last_change, control.epoch),
        "latest_signals": signals_latest(),
        "trip_limits": limits,
        "switch_form": SwitchForm(),
    }
    return _live_or_page(request, "oms/overview.html", "oms/_overview_live.html", context)


def _position_order(sort: str) -> tuple[str, list[str]]:
    key = sort.lstrip("-")
    if key not in POSITION_SORTS:
        return "-created_at", ["-created_at", "-id"]
    return sort, [sort, "-id" if sort.startswith("-") else "id"]


@console_view
def positions(request: HttpRequest) -> HttpResponse:
    form = PositionFilterForm(request.GET or None)
    filters = form.filters() if form.is_bound and form.is_valid() else {}
    sort, ordering = _position_order(form.sort_key())
    page = Paginator(positions_filtered(**filters).order_by(*ordering), PAGE_SIZE).get_page(request.GET.get("page"))
    rows = list(page.object_list)
    marks = positions_marks(rows)  # one quote batch for the whole page
    context = {
        "form": form,
        "page": page,
        "rows": [(position, marks.get(position.pk)) for position in rows],
        "sort": sort,
        "open_count": open_book()["count"],
    }
    return _live_or_page(request, "oms/positions.html", "oms/_positions_table.html", context)


def _position_context(position_id: int) -> dict:
    try:
        position = position_get(position_id)
    except Position.DoesNotExist:
        raise Http404(f"position {position_id} does not exist") from None
    return {
        "position": position,
        "mark": positions_marks([position]).get(position.pk),
        "orders": position.orders.order_by("created_at", "id"),
        "fundings": position_funding_list(position.pk),
        "signals": position.signals.order_by("received_at", "id"),
        "price_mode": settings.PRICE_MODE,
        "closed_by": None if position.is_open else position_closed_by(position.pk),
        "settle_form": SettleForm(),
        "stop_form": StopMoveForm(),
    }


@console_view
def position_detail(request: HttpRequest, position_id: int) -> HttpResponse:
    return render(request, "oms/position_detail.html", _position_context(position_id))


@operator_action("oms.close_position")
@require_http_methods(["GET", "POST"])
def position_close(request: HttpRequest, position_id: int) -> HttpResponse:
    """GET: the confirmation with the price and PnL a close would book now. POST: close at market."""
    if request.method == "GET":
        context = {
            **_position_context(position_id),
            "confirm_close": True,
            "next": _safe_next(request, reverse("oms:positions")),
        }
        return render(request, "oms/position_detail.html", context)
    try:
        operator = Operator.from_request(request, OperatorSource.CONSOLE, request.POST.get("reason", ""))
        result = position_close_at_market(position_id=position_id, reason=CloseReason.MANUAL, operator=operator)
    except PositionNotFound:
        raise Http404(f"position {position_id} does not exist") from None
    except (PriceUnavailable, PositionCloseFailed) as exc:
        messages.error(request, f"Position #{position_id} was not closed: {exc.message}")
        return redirect("oms:position-detail", position_id=position_id)
    p = result.position
    summary = (
        f"#{p.pk} {p.symbol} {p.side} at {price(p.close_price)}, PnL {money(p.pnl)} USDT "
        f"({p.get_auto_close_reason_display().lower()})"
    )
    if result.closed_now:
        messages.success(request, f"Closed position {summary}.")
    else:
        messages.info(request, f"Position was already closed: {summary}.")
    return redirect(_safe_next(request, reverse("oms:positions")))


def _form_problems(form) -> str:
    """A bound form's errors in one line, for a message."""
    return "; ".join(" ".join(errors) for errors in form.errors.values())


@operator_action("oms.close_position")
@require_http_methods(["POST"])
def position_settle_view(request: HttpRequest, position_id: int) -> HttpResponse:
    """A stuck position (no usable price): close it at the operator's price, or void it."""
    form = SettleForm(request.POST)
    if not form.is_valid():
        problems = _form_problems(form)
        messages.error(request, f"Position #{position_id} was not settled: {problems}")
        return redirect("oms:position-detail", position_id=position_id)
    data = form.cleaned_data
    operator = Operator.from_request(request, OperatorSource.CONSOLE, data["reason"])
    try:
        result = position_settle(
            position_id=position_id, price=None if data["void"] else data["price"], void=data["void"], operator=operator
        )
    except PositionNotFound:
        raise Http404(f"position {position_id} does not exist") from None
    except (SettleRefused, PositionCloseFailed) as exc:
        messages.error(request, f"Position #{position_id} was not settled: {exc.message}")
        return redirect("oms:position-detail", position_id=position_id)
    except SettleInvalid as exc:
        messages.error(request, f"Position #{position_id} was not settled: {exc}")
        return redirect("oms:position-detail", position_id=position_id)
    p = result.position
    if not result.closed_now:
        messages.info(request, f"Position #{p.pk} was already {p.status}: nothing settled.")
    elif data["void"]:
        messages.success(request, f"Voided position #{p.pk} {p.symbol} {p.side}: no PnL, not a trade.")
    else:
        messages.success(
            request,
            f"Closed position #{p.pk} {p.symbol} {p.side} at {price(p.close_price)}, "
            f"PnL {money(p.pnl)} USDT (operator's price).",
        )
    return redirect("oms:position-detail", position_id=position_id)


@operator_action("oms.close_position")
@require_http_methods(["POST"])
def position_stop_view(request: HttpRequest, position_id: int) -> HttpResponse:
    """Move the stop loss of an open position (to a price or break even), as a stop signal does."""
    form = StopMoveForm(request.POST)
    if not form.is_valid():
        problems = _form_problems(form)
        messages.error(request, f"The stop of position #{position_id} was not moved: {problems}")
        return redirect("oms:position-detail", position_id=position_id)
    data = form.cleaned_data
    operator = Operator.from_request(request, OperatorSource.CONSOLE, data["reason"])
    try:
        result = position_stop_move(
            position_id=position_id,
            sl_price=None if data["break_even"] else data["sl_price"],
            allow_loosen=data["allow_loosen"],
            operator=operator,
        )
    except PositionNotFound:
        raise Http404(f"position {position_id} does not exist") from None
    except ExchangeStopFailed as exc:
        messages.error(request, f"The stop of position #{position_id} was not moved: {exc.message}")
        return redirect("oms:position-detail", position_id=position_id)
    p = result.position
    if result.moved:
        messages.success(
            request, f"Stop of position #{p.pk} moved from {price(result.previous_sl_price)} to {price(p.sl_price)}."
        )
    else:
        messages.error(request, f"The stop of position #{p.pk} was not moved: {result.refused}.")
    return redirect("oms:position-detail", position_id=position_id)


@operator_action("oms.close_position")
@require_http_methods(["GET", "POST"])
def positions_close_all_view(request: HttpRequest) -> HttpResponse:
    """Panic: close every open position at market (reason `panic`) after typing the phrase."""
    form = CloseAllForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        operator = Operator.from_request(request, OperatorSource.CONSOLE, form.cleaned_data.get("reason", ""))
        result = positions_close_all(reason=CloseReason.PANIC, operator=operator)
        total = sum((p.pnl for p in result.closed), start=0)
        messages.success(request, f"Close all: closed {len(result.closed)} position(s), PnL {money(total)} USDT.")
        for symbol, why in result.failed.items():
            messages.error(request, f"{symbol} positions stay open: {why}")
        for position_id, why in result.failed_positions.items():
            messages.error(request, f"Position #{position_id} stays open: {why}")
        return redirect(f"{reverse('oms:positions')}?status=open")
    book = open_book()
    context = {"form": form, "phrase": CLOSE_ALL_PHRASE, "open_count": book["count"], "open_notional": book["notional"]}
    return render(request, "oms/close_all.html", context, status=400 if form.is_bound else 200)


@console_view
@require_http_methods(["GET", "POST"])
def switch(request: HttpRequest) -> HttpResponse:
    """The OMS switch: its state and history; POST (with a reason) turns it on or off."""
    form = SwitchForm(request.POST or None)
    if request.method == "POST":
        if not request.user.has_perm("oms.change_switch"):
            raise PermissionDenied("Your account lacks the permission oms.change_switch.")
        if form.is_valid() and request.POST.get("enabled") == "flatten":  # BROKER (#11): OFF and flatten
            return _switch_off_and_flatten(request, form.cleaned_data["reason"])
        if form.is_valid():
            state = oms_switch_set(
                enabled=form.cleaned_data["enabled"],
                reason=form.cleaned_data["reason"],
                actor=request.user.get_username(),
                source=SwitchSource.DASHBOARD,
                user=request.user,
            )
            word = "ON" if state.switch_on else "OFF"
            note = " The environment still forces it off (OMS_ENABLED=false)." if state.forced_off_by_env else ""
            verdict = "accepted" if state.enabled else "refused"
            messages.success(request, f"OMS switched {word}: new signals are {verdict} from now on.{note}")
            return redirect(_safe_next(request, reverse("oms:switch")))
    context = {
        "form": form,
        "switch": switch_state(),
        "last_change": switch_last_change(),
        "history": switch_history(),
        "trip_limits": TripLimits.from_settings(),
    }
    return render(request, "oms/switch.html", context, status=400 if form.is_bound else 200)


def _switch_off_and_flatten(request: HttpRequest, reason: str) -> HttpResponse:
    if not request.user.has_perm("oms.close_position"):
        raise PermissionDenied("Your account lacks the permission oms.close_position.")
    from oms.services.execution import flatten

    result = flatten(actor=request.user.get_username(), reason=reason, source=SwitchSource.DASHBOARD, user=request.user)
    if result.flat:
        messages.success(
            request,
            f"OMS switched OFF and flat: {len(result.closed)} position(s) closed in "
            f"{result.seconds:.1f} s; the exchange confirms no position and no open order.",
        )
    else:
        problems = "; ".join([*result.remaining_positions, *(f"{k}: {v}" for k, v in result.failed.items())])
        messages.error(request, f"OMS switched OFF but NOT FLAT: {problems}. Check the exchange's app now.")
    return redirect(reverse("oms:switch"))


@console_view
def orders(request: HttpRequest) -> HttpResponse:
    form = OrderFilterForm(request.GET or None)
    symbol = form.cleaned_data["symbol"].strip().upper() if form.is_bound and form.is_valid() else ""
    page = Paginator(order_list(symbol=symbol), PAGE_SIZE).get_page(request.GET.get("page"))
    return _live_or_page(request, "oms/orders.html", "oms/_orders_table.html", {"page": page, "symbol": symbol})


@console_view
def signals(request: HttpRequest) -> HttpResponse:
    form = SignalFilterForm(request.GET or None)
    chosen = form.cleaned_data if form.is_bound and form.is_valid() else {}
    queryset = signal_list(outcome=chosen.get("outcome") or "", symbol=(chosen.get("symbol") or "").strip().upper())
    page = Paginator(queryset, PAGE_SIZE).get_page(request.GET.get("page"))
    return _live_or_page(request, "oms/signals.html", "oms/_signals_table.html", {"form": form, "page": page})


@console_view
def statistics(request: HttpRequest) -> HttpResponse:
    form = StatsFilterForm(request.GET or None)
    filters = form.filters() if form.is_bound and form.is_valid() else {}

    def compute() -> dict:
        breakdowns = []
        for group_by, title in BREAKDOWNS:
            groups = book_stats(filters, group_by)
            if group_by == "day":
                groups = groups[::-1]  # newest day first
            breakdowns.append({"key": group_by, "title": title, "groups": groups})
        stats = book_stats(filters)
        return {
            "stats": stats,
            "equity": epoch_equity(),
            "breakdowns": breakdowns,
            "other_exits": stats["closed_positions"] - stats["tp_count"] - stats["sl_count"],
        }

    figures = _book_cached("stats", compute, sorted(filters.items()))
    return render(request, "oms/statistics.html", {"form": form, **figures})


@console_view
def audit(request: HttpRequest) -> HttpResponse:
    """The operator audit: every manual action, who, when, from where and why (viewers may read it)."""
    form = AuditFilterForm(request.GET or None)
    chosen = form.cleaned_data if form.is_bound and form.is_valid() else {}
    queryset = operator_action_list(
        position_id=chosen.get("position"), actor=(chosen.get("actor") or "").strip(), action=chosen.get("action") or ""
    )
    page = Paginator(queryset, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "oms/audit.html", {"form": form, "page": page}, status=400 if form.errors else 200)


@console_view
def notifications(request: HttpRequest) -> HttpResponse:
    """The notification log: every alert, sent, failed, suppressed or not configured (viewers may read it)."""
    status = request.GET.get("status", "")
    if status not in NotificationStatus.values:
        status = ""
    page = Paginator(notification_list(status=status), PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "status": status,
        "statuses": NotificationStatus.choices,
        "configured": bool(settings.NOTIFY_URLS.strip()),
        "repeat_min": settings.NOTIFY_REPEAT_MIN,
    }
    return render(request, "oms/notifications.html", context)
