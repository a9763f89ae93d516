"""The OMS switch: whether new positions may be opened. Changed at runtime, every change recorded."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from lomsite.jsonlog import log_event
from oms.models import OmsControl, OmsSwitchChange, SwitchSource

logger = logging.getLogger("loms.oms")


@dataclass(frozen=True)
class SwitchState:
    enabled: bool  # effective: the runtime switch AND the environment
    switch_on: bool  # the runtime switch alone
    forced_off_by_env: bool
    changed_by: str
    changed_at: object
    reason: str

    @property
    def disabled_reason(self) -> str:
        if self.forced_off_by_env:
            return "OMS disabled by the environment (OMS_ENABLED=false)"
        if not self.switch_on:
            by = f" by {self.changed_by}" if self.changed_by else ""
            return f"OMS switched off{by}: {self.reason}" if self.reason else f"OMS switched off{by}"
        return ""


def switch_state(control: OmsControl | None = None) -> SwitchState:
    control = control or OmsControl.load()
    forced_off = not settings.OMS_ENABLED
    return SwitchState(
        enabled=control.enabled and not forced_off,
        switch_on=control.enabled,
        forced_off_by_env=forced_off,
        changed_by=control.changed_by,
        changed_at=control.changed_at,
        reason=control.reason,
    )


@transaction.atomic
def oms_switch_set(*, enabled: bool, actor: str, reason: str, source: str = SwitchSource.API, user=None) -> SwitchState:
    """Turn the switch on or off and record who, when and why (even when it was already so)."""
    reason = reason.strip()
    if not reason:
        raise ValueError("a reason is required to change the OMS switch")
    now = timezone.now()
    # Locked so the change and its history row are ordered against concurrent opens and changes.
    control = OmsControl.objects.select_for_update().get(pk=OmsControl.load().pk)
    control.enabled, control.changed_at, control.changed_by, control.reason = enabled, now, actor, reason
    control.save(update_fields=["enabled", "changed_at", "changed_by", "reason"])
    change = OmsSwitchChange.objects.create(
        enabled=enabled, changed_at=now, changed_by=actor, user=user, reason=reason, source=source
    )
    log_event(logger, "oms_switch_changed", enabled=enabled, actor=actor, reason=reason, source=source)
    if source != SwitchSource.AUTO:  # an automatic trip is no operator's action
        from oms.services.operator_audit import SWITCH_TO_OPERATOR_SOURCE, operator_action_record

        operator_action_record(
            actor=actor,
            source=SWITCH_TO_OPERATOR_SOURCE[source],
            user=user,
            action="switch",
            reason=reason,
            details={"enabled": enabled, "switch_change_id": change.pk},
        )
    from oms.services.notify import notify_switch_change  # recorded now, sent by django-q after commit

    notify_switch_change(enabled=enabled, actor=actor, reason=reason, source=source, change_id=change.pk)
    return switch_state(control)
