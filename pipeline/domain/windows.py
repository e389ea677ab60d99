"""Minute-of-hour enforcement windows: partial enforcement that is predictable, not random."""
from __future__ import annotations

import zlib

BLOCK, THROTTLE = "block", "throttle"


def window_offset(server_id: str) -> int:
    """Minute of the hour at which this server's windows start."""
    return zlib.crc32(server_id.encode("utf-8")) % 60


def action_at(server_id: str, throttle_minutes: int, block_minutes: int, minute: int) -> str | None:
    """What to do with this server's mail in `minute` (0-59): block, throttle or None (pass).

    From the offset on, the first `block_minutes` block, the next `throttle_minutes` throttle.
    """
    relative = (minute - window_offset(server_id)) % 60
    if relative < block_minutes:
        return BLOCK
    if relative < block_minutes + throttle_minutes:
        return THROTTLE
    return None


def minutes_text(start: int, count: int) -> str:
    """Minutes of the hour from `start` on, in words: "minutes 17 to 21"; a window past the hour
    wraps ("minutes 58 to 59 and 0 to 2")."""
    if count >= 60:
        return "every minute"
    end = (start + count - 1) % 60
    if count == 1:
        return f"minute {start}"
    if end >= start:
        return f"minutes {start} to {end}"
    return f"minutes {'59' if start == 59 else f'{start} to 59'} and 0 to {end}"


def throttle_reply(minutes: int) -> str:
    return f"450 4.7.230 Connecting server version is out-of-date; connection throttled for {minutes} mins/hr."


def block_reply(minutes: int) -> str:
    return f"550 5.7.230 Connecting server version is out-of-date; connection blocked for {minutes} mins/hr."
