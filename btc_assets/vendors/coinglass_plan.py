"""How far back a CoinGlass plan serves short-interval history, and the refusal past it.

CoinGlass keeps 15m bars for 90 days on Standard and 180 on Professional (vendor-apis.md
4.1; shorter intervals keep less, longer ones more). What the API answers for older bars is
UNCONFIRMED in the reference: most likely an empty ``data`` list with code "0", which a
pager cannot tell from a gap. So a client told its plan's depth
(``CoinGlassClient(history_days=N)``, setting ``BTC_ASSETS_COINGLASS_HISTORY_DAYS``) does not
ask: a request for a bar of 15m or shorter opening before ``now - N days`` raises
:class:`CoinGlassHistoryLimit` (a :class:`VendorRefused`: a definite "no", never retried,
one a fallback may act on) before anything is sent. :meth:`HistoryWindow.first_full_day`
says which days to ask for instead. Intervals above 15m are not limited here (the plan
keeps them longer; the setting is the 15m depth).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from btc_assets.vendors.errors import VendorRefused

HISTORY_SETTING = "BTC_ASSETS_COINGLASS_HISTORY_DAYS"
LIMITED_INTERVAL_MS = 15 * 60_000  # the setting is the plan's 15m depth
DAY_MS = 86_400_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class CoinGlassHistoryLimit(VendorRefused):
    """Bars older than the plan's history window were asked for; nothing was sent."""


@dataclass(frozen=True)
class HistoryWindow:
    """The plan's short-interval history depth in days (None: unlimited)."""

    days: int | None = None

    def __post_init__(self) -> None:
        if self.days is not None and self.days < 1:
            raise ValueError(f"history_days={self.days}: expected a whole number >= 1 or None")

    def start_ms(self, now_ms: int, step_ms: int) -> int | None:
        """The oldest bar open the plan serves at this interval, or None if unlimited."""
        if self.days is None or step_ms > LIMITED_INTERVAL_MS:
            return None
        return now_ms - self.days * DAY_MS

    def first_full_day(self, now_ms: int, step_ms: int = LIMITED_INTERVAL_MS) -> date | None:
        """The first UTC day whose bars all lie inside the window (None: unlimited)."""
        start = self.start_ms(now_ms, step_ms)
        if start is None:
            return None
        at = _EPOCH + timedelta(milliseconds=start)
        midnight = at == datetime(at.year, at.month, at.day, tzinfo=UTC)
        return at.date() if midnight else at.date() + timedelta(days=1)

    def refusal(
        self, vendor: str, endpoint: str, params: dict[str, str], first_open_ms: int,
        now_ms: int, step_ms: int,
    ) -> CoinGlassHistoryLimit | None:  # fmt: skip
        """The error for a request whose first bar opens before the window, else None."""
        start = self.start_ms(now_ms, step_ms)
        if start is None or first_open_ms >= start:
            return None
        oldest = (_EPOCH + timedelta(milliseconds=start)).isoformat(timespec="minutes")
        asked = (_EPOCH + timedelta(milliseconds=first_open_ms)).isoformat(timespec="minutes")
        return CoinGlassHistoryLimit(
            vendor, endpoint, params, status=None,
            message=f"bars from {asked} are older than the plan's {self.days}-day history "
            f"(oldest served: {oldest}); not asked",
            hint=f"{HISTORY_SETTING}={self.days}: ask for days from "
            f"{self.first_full_day(now_ms, step_ms)} on, or unset it if the plan keeps more",
        )  # fmt: skip
