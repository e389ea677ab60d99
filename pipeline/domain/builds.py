"""Software builds as dotted integers, in the short form Exchange writes in Received headers."""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

_DOTTED = re.compile(r"^\d{1,5}(?:\.\d{1,5}){1,3}$")

# Exchange Online's own build line: a Microsoft datacentre server, never an on-premises one.
CLOUD_LINE = (15, 20)


@dataclass(frozen=True, order=True)
class Build:
    parts: tuple[int, ...]

    @classmethod
    @lru_cache(maxsize=4096)
    def parse(cls, text: str | None) -> Build | None:
        """Accept the short (15.1.2507.6) and the zero-padded long form (15.01.2507.006)."""
        if not text:
            return None
        text = text.strip()
        if not _DOTTED.match(text):
            return None
        return cls(tuple(int(part) for part in text.split(".")))

    @property
    def is_cloud(self) -> bool:
        major, minor = (self.parts + (0,))[:2]
        return major == CLOUD_LINE[0] and minor >= CLOUD_LINE[1]

    def __str__(self) -> str:
        return ".".join(map(str, self.parts))


def normalise(text: str | None) -> str | None:
    build = Build.parse(text)
    return str(build) if build else None
