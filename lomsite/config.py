"""Strict configuration readers that remember where every value came from.

Precedence: process environment, then the `.env` file, then the built-in default. Every key
read is recorded so `manage.py show_config` can show the effective value and its origin.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from urllib.parse import unquote_plus

from django.core.exceptions import ImproperlyConfigured
from dotenv import dotenv_values

TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class ConfigEntry:
    key: str
    value: object
    source: str  # "environment", ".env" or "default"
    secret: bool
    redact: Callable[[str], str] | None = None

    @property
    def display(self) -> str:
        if self.secret and self.value not in (None, ""):
            return "********"
        text = "" if self.value is None else str(self.value)
        return self.redact(text) if self.redact else text


class EnvConfig:
    def __init__(self, env_file: Path | None, environ: dict[str, str] | None = None) -> None:
        self.environ = os.environ if environ is None else environ
        self.env_file = env_file
        from_file = dotenv_values(env_file) if env_file and env_file.is_file() else {}
        self.file_values = {k: v for k, v in from_file.items() if v is not None}
        self.entries: dict[str, ConfigEntry] = {}
        self.renamed: dict[str, str] = {}  # new key -> its old name, still read (with a warning)
        self.deprecations: list[str] = []  # one message per old name that is set

    def rename(self, old: str, new: str) -> None:
        """`new` replaces `old`: `old` is still read when `new` is not set, with a DeprecationWarning
        (and the `lomsite.W001` system check), and is ignored when both are set."""
        self.renamed[new] = old
        if self._lookup(old)[0] is None:
            return
        ignored = f" ({old} is ignored: {new} is set)" if self._lookup(new)[0] is not None else ""
        message = f"{old} is deprecated: rename it to {new}{ignored}"
        self.deprecations.append(message)
        warnings.warn(message, DeprecationWarning, stacklevel=2)

    def _lookup(self, key: str) -> tuple[str | None, str]:
        if key in self.environ:
            return self.environ[key], "environment"
        if key in self.file_values:
            return self.file_values[key], ".env"
        return None, "default"

    def _raw(self, key: str) -> tuple[str | None, str]:
        raw, source = self._lookup(key)
        old = self.renamed.get(key)
        if raw is None and old is not None:
            raw, source = self._lookup(old)
            if raw is not None:
                return raw, f"{source} (deprecated name {old})"
        return raw, source

    def _record(self, key: str, value: object, source: str, secret: bool, redact=None) -> None:
        self.entries[key] = ConfigEntry(key, value, source, secret, redact)

    def _read(self, key: str, default, parse, secret: bool, redact=None):
        raw, source = self._raw(key)
        if raw is None:
            value = default
        else:
            try:
                value = parse(raw.strip())
            except (ValueError, InvalidOperation) as exc:
                shown = "<hidden>" if secret else repr(raw)
                raise ImproperlyConfigured(f"{key}: {exc} (got {shown}, from {source})") from None
        self._record(key, value, source, secret, redact)
        return value

    def str(
        self,
        key: str,
        default: str | None = "",
        *,
        choices: tuple[str, ...] | None = None,
        secret: bool = False,
        redact: Callable[[str], str] | None = None,
    ):
        def parse(raw: str) -> str:
            if choices and raw not in choices:
                raise ValueError(f"must be one of {', '.join(choices)}")
            return raw

        return self._read(key, default, parse, secret, redact)

    def bool(self, key: str, default: bool) -> bool:
        def parse(raw: str) -> bool:
            if raw.lower() in TRUE_WORDS:
                return True
            if raw.lower() in FALSE_WORDS:
                return False
            raise ValueError("must be true or false")

        return self._read(key, default, parse, False)

    def int(self, key: str, default: int | None, *, minimum: int | None = None, optional: bool = False):
        """An integer; with `optional`, an empty value means None ("no limit")."""

        def parse(raw: str) -> int | None:
            if optional and raw == "":
                return None
            value = int(raw)
            if minimum is not None and value < minimum:
                raise ValueError(f"must be at least {minimum}")
            return value

        return self._read(key, default, parse, False)

    def decimal(self, key: str, default: Decimal | None, *, minimum: Decimal | None = None, optional: bool = False):
        def parse(raw: str) -> Decimal | None:
            if optional and raw == "":
                return None
            try:
                value = Decimal(raw)
            except InvalidOperation:
                raise ValueError("must be a number") from None
            if not value.is_finite():
                raise ValueError("must be a finite number")
            if minimum is not None and value < minimum:
                raise ValueError(f"must be at least {minimum}")
            return value

        return self._read(key, default, parse, False)

    def float(self, key: str, default: float, *, minimum: float | None = None) -> float:
        def parse(raw: str) -> float:
            value = float(raw)
            if minimum is not None and value < minimum:
                raise ValueError(f"must be at least {minimum}")
            return value

        return self._read(key, default, parse, False)

    def list(self, key: str, default: list[str] | None = None, *, upper: bool = False) -> list[str]:
        def parse(raw: str) -> list[str]:
            items = [item.strip() for item in raw.split(",") if item.strip()]
            return [item.upper() for item in items] if upper else items

        return self._read(key, list(default or []), parse, False)

    def report(self) -> list[ConfigEntry]:
        return sorted(self.entries.values(), key=lambda entry: entry.key)


SECRET_QUERY_WORDS = ("password", "passwd", "pwd", "secret", "token")


def redact_url_password(url: str) -> str:
    """Mask the password of a database URL wherever it sits.

    `scheme://user:secret@host/db` → `scheme://user:***@host/db`, and a query parameter that
    names a password (`?password=…`, `?sslpassword=…`, also percent-encoded names) → `password=***`:
    dj-database-url passes query parameters to the driver, so a password can hide there too.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    before, qmark, query = rest.partition("?")
    if "@" in before:
        credentials, _, host = before.rpartition("@")
        if ":" in credentials:
            before = f"{credentials.split(':', 1)[0]}:***@{host}"
    if qmark:
        query, hash_mark, fragment = query.partition("#")
        query = "&".join(_redacted_pair(pair) for pair in query.split("&")) + hash_mark + fragment
    return f"{scheme}://{before}{qmark}{query}"


def _redacted_pair(pair: str) -> str:
    name, equals, _ = pair.partition("=")
    if equals and any(word in unquote_plus(name).lower() for word in SECRET_QUERY_WORDS):
        return f"{name}=***"
    return pair
