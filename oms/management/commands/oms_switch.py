import getpass

from django.core.management.base import BaseCommand, CommandError

from oms.models import SwitchSource
from oms.services.switch import oms_switch_set, switch_state


class Command(BaseCommand):
    help = (
        "Turn the OMS switch on or off (new positions allowed or not), effective for the next signal, "
        "recorded in the switch history with who and why. Without arguments, show the current state."
    )

    def add_arguments(self, parser):
        parser.add_argument("state", nargs="?", choices=["on", "off"], help="on or off; omit to show the state")
        parser.add_argument("--reason", default="", help="why (required to change the switch)")
        parser.add_argument("--actor", default=None, help="who is changing it (default: the OS user)")

    def handle(self, *args, state, reason, actor, **options):
        if state is None:
            self._show(switch_state())
            return
        if not reason.strip():
            raise CommandError('A reason is required: --reason "..." (it is recorded in the switch history).')
        actor = (actor or "").strip() or f"{getpass.getuser()} (command)"
        new_state = oms_switch_set(enabled=state == "on", actor=actor, reason=reason, source=SwitchSource.COMMAND)
        self._show(new_state)

    def _show(self, state) -> None:
        word = "ON" if state.enabled else "OFF"
        style = self.style.SUCCESS if state.enabled else self.style.ERROR
        self.stdout.write(
            style(f"OMS {word}") + f" (runtime switch {'on' if state.switch_on else 'off'}, "
            f"changed by {state.changed_by or '-'} at {state.changed_at:%Y-%m-%d %H:%M:%S} UTC: "
            f"{state.reason or '-'})"
        )
        if state.forced_off_by_env:
            self.stdout.write(self.style.WARNING("The environment forces it off: OMS_ENABLED=false."))
