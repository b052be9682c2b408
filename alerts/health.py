"""Pure feed-health decisions: feed.down after N consecutive failed polls, feed.recovered after."""

from __future__ import annotations

from typing import Any

from alerts.policy import alert_id
from alerts.subscriptions import Subscription
from pipelines.model import Alert
from pipelines.sources.feeds import FeedHealth

__all__ = ["DOWN_AFTER", "FeedHealthTracker"]

DOWN_AFTER = 5
_HEALTHY = {"ok", "not_modified"}


class FeedHealthTracker:
    """One feed's up/down state; ``observe`` each poll's health record."""

    def __init__(self, down_after: int = DOWN_AFTER, down: bool = False, down_since: str | None = None) -> None:
        if down_after < 1:
            raise ValueError("down_after must be at least 1")
        self.down_after = down_after
        self.down = down
        self.down_since = down_since

    def observe(self, health: FeedHealth, subscriptions: list[Subscription]) -> list[Alert]:
        if not self.down and health.outcome not in _HEALTHY and health.consecutive_failures >= self.down_after:
            self.down, self.down_since = True, health.checked_at.isoformat()
            kind = "feed.down"
            reason = (
                f"feed {health.feed_id} down: {health.consecutive_failures} consecutive failed polls "
                f"(last: {health.outcome}{f' HTTP {health.http_status}' if health.http_status else ''})"
            )
        elif self.down and health.outcome in _HEALTHY:
            kind, reason = "feed.recovered", f"feed {health.feed_id} recovered (down since {self.down_since})"
            self.down = False
        else:
            return []
        subject = f"{health.feed_id}/{self.down_since}"
        details = {
            "feed_id": health.feed_id, "url": health.url, "outcome": health.outcome,
            "http_status": health.http_status, "consecutive_failures": health.consecutive_failures,
            "last_success": health.last_success.isoformat() if health.last_success else None,
            "error": health.error[:500],
        }  # fmt: skip
        return [
            Alert(
                id=alert_id(s.id, kind, subject),
                kind=kind,
                subscription=s.id,
                topics=[],
                items=[],  # type: ignore[arg-type]
                reason=reason,
                timestamp=health.checked_at,
                details=details,
            )
            for s in subscriptions
            if s.enabled and s.wants_kind(kind)  # type: ignore[arg-type]
        ]

    def to_state(self) -> dict[str, Any]:
        return {"down": self.down, "down_since": self.down_since}

    @classmethod
    def from_state(cls, state: dict[str, Any] | None, down_after: int = DOWN_AFTER) -> FeedHealthTracker:
        state = state or {}
        return cls(down_after, bool(state.get("down")), state.get("down_since"))
