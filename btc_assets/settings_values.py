"""What each kind of setting value must look like: the checks ``settings.py`` declares its
variables with (pydantic validators and annotated types). No environment is read here.

A check raises ValueError with a reason only where it has one to add to the variable's
"expected ..." (an empty ValueError means: just say what is expected).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Annotated, Any

from croniter import CroniterBadDateError, croniter
from pydantic import AfterValidator, BeforeValidator, Field, HttpUrl

from btc_assets import clock
from btc_assets.core.symbols import SymbolSyntaxError, parse_symbols

_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]")


def blank_is_none(value: Any) -> Any:
    """For variables whose absence means "none": set but empty is the same as unset."""
    return None if isinstance(value, str) and not value.strip() else value


def symbol(value: str | None) -> str | None:
    """One Binance symbol, letters and digits, upper-cased (the older BTC_ASSETS_SYMBOL)."""
    if value is None:
        return None
    if not (value.isascii() and value.isalnum()):
        raise ValueError()
    return value.upper()


def symbol_list(value: str | None) -> str | None:
    """A basket as ``core.symbols`` reads it; the reason names the bad entry."""
    if value is None:
        return None
    try:
        parse_symbols(value)
    except SymbolSyntaxError as exc:
        raise ValueError(str(exc)) from None
    return value


def iso_date(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError() from None


def not_in_the_future(value: date) -> date:
    today = clock.today_utc()
    if value > today:
        raise ValueError(f"after today ({today}, UTC)")
    return value


def cron(value: str) -> str:
    """Dagster's rule (five fields, or an alias such as @daily, that can fire), read by
    croniter, the parser Dagster vendors."""
    if not croniter.is_valid(value) or len(croniter.expand(value)[0]) != 5:
        raise ValueError()
    try:
        croniter(value, datetime(2000, 1, 1, tzinfo=UTC)).get_next(datetime)
    except CroniterBadDateError:
        raise ValueError("never fires (no such day)") from None
    return value


def names(value: str) -> str:
    listed = [n.strip() for n in value.split(",")]
    if not all(listed):
        raise ValueError("an empty name in the list")
    return ",".join(listed)


def lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def bucket(value: str | None) -> str | None:
    """``gs://name/`` or ``name``; GCS's naming rule, so a typo fails here, not at upload."""
    if value is None:
        return None
    name = value.removeprefix("gs://").strip("/")
    if not _BUCKET_NAME.fullmatch(name):
        raise ValueError()
    return name


def lake_url(value: str | None) -> str | None:
    """A local folder, or ``gs://bucket[/prefix]`` with a bucket GCS accepts; any other
    scheme is refused rather than taken for a folder named ``s3:``."""
    if value is None:
        return None
    if value.startswith("gs://"):
        name, _, prefix = value.removeprefix("gs://").partition("/")
        if not _BUCKET_NAME.fullmatch(name):
            raise ValueError(f"bucket {name!r} is not a GCS bucket name")
        if "//" in prefix.rstrip("/") or any(p in (".", "..") for p in prefix.split("/")):
            raise ValueError(f"prefix {prefix!r} has an empty, '.' or '..' folder")
        return "gs://" + "/".join(p for p in (name, prefix.strip("/")) if p)
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", value):
        raise ValueError("only a folder path or gs://BUCKET/PREFIX is supported")
    return value


NonEmpty = Annotated[str, Field(min_length=1)]
WholeAboveZero = Annotated[int, Field(gt=0)]
WholeFromZero = Annotated[int, Field(ge=0)]
OptionalDays = Annotated[Annotated[int, Field(ge=1)] | None, BeforeValidator(blank_is_none)]
Url = HttpUrl  # http(s), with a host: pydantic's check
OptionalUrl = Annotated[HttpUrl | None, BeforeValidator(blank_is_none)]
OptionalText = Annotated[str | None, BeforeValidator(blank_is_none)]
OptionalSymbol = Annotated[str | None, AfterValidator(symbol)]
SymbolList = Annotated[str | None, AfterValidator(symbol_list)]
PastDate = Annotated[date, BeforeValidator(iso_date), AfterValidator(not_in_the_future)]
Cron = Annotated[str, AfterValidator(cron)]
NameList = Annotated[str, AfterValidator(names)]
BucketName = Annotated[OptionalText, AfterValidator(bucket)]
FolderPrefix = Annotated[str, AfterValidator(lambda v: v.strip("/"))]
LakeUrl = Annotated[OptionalText, AfterValidator(lake_url)]
