"""Who is acting. Every registry function takes the actor: a holder acts only for itself, support staff
for anyone. Another holder's data is reported as not found, so its existence does not leak either."""

from __future__ import annotations

from dataclasses import dataclass

from holders.errors import BadInput, NotFound


@dataclass(frozen=True)
class Actor:
    holder_id: str | None = None     # set: a holder acting for itself
    staff: str | None = None         # set: support staff acting on a holder's behalf

    @classmethod
    def holder(cls, holder_id: str) -> Actor:
        return cls(holder_id=holder_id)

    @classmethod
    def support(cls, staff: str) -> Actor:
        if not staff:
            raise BadInput("support staff must be named")
        return cls(staff=staff)

    @property
    def is_support(self) -> bool:
        return self.staff is not None and self.holder_id is None

    def check(self, holder_id: str) -> None:
        if not (self.is_support or (self.holder_id is not None and self.holder_id == holder_id)):
            raise NotFound(f"no holder {holder_id}")

    def check_support(self, what: str) -> None:
        if not self.is_support:
            raise NotFound(f"{what}: support staff only")
