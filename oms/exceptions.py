"""Domain errors. The API's exception handler turns each into a JSON body with its status."""

from __future__ import annotations


class OmsError(Exception):
    status_code = 400
    code = "oms_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class PositionNotFound(OmsError):
    status_code = 404
    code = "position_not_found"


class PriceUnavailable(OmsError):
    """No usable quote: nothing is closed at a price we do not trust."""

    status_code = 503
    code = "price_unavailable"


class ExchangeCloseFailed(PriceUnavailable):
    """Demo/live: the exchange did not fill the reduce-only close; the position stays open (a kind of
    PriceUnavailable, so every caller that leaves a position open on a bad price does the same)."""

    status_code = 502
    code = "exchange_close_failed"


class PartialExitRefused(ExchangeCloseFailed):
    """Demo/live: the share of a partial exit is below the market's minimum order size: nothing sent."""


class PartialExitAlreadySent(ExchangeCloseFailed):
    """Demo/live: a partial exit that happens once per position (TP1) was sent already: nothing sent."""


class ExchangePositionInPaperMode(ExchangeCloseFailed):
    """A demo/live position while BROKER_MODE is paper: the paper path never closes it (it is on the
    exchange); flatten before switching back to paper (docs/LIVE.md, rollback)."""

    status_code = 409
    code = "exchange_position_in_paper_mode"


class OmsDisabled(OmsError):
    status_code = 409
    code = "oms_disabled"


class RiskLimitExceeded(OmsError):
    status_code = 409
    code = "risk_blocked"

    def __init__(self, message: str, scope: str) -> None:
        super().__init__(message)
        self.scope = scope


class ConfirmationRequired(OmsError):
    code = "confirmation_required"


class PositionCloseFailed(OmsError):
    """This position's close cannot be booked (a row no close can be computed from); it stays open."""

    status_code = 409
    code = "close_failed"


class SettleRefused(OmsError):
    """A stuck-position settle (issue #12 §7) that must not happen: the symbol has a usable price
    (use the normal close), or the position lives on an exchange (the exchange is the truth)."""

    status_code = 409

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


class ExchangeStopFailed(OmsError):
    """Demo/live: the exchange did not take the new stop; LOMS keeps the old one (issue #12 §1)."""

    status_code = 502
    code = "exchange_stop_failed"
