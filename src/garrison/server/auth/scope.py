"""What part of the organisation tree a caller may see: the whole tree, or one unit's subtree."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Scope:
    """A subtree, given by its root's materialised path; ``everything`` for the whole tree."""

    path: str
    everything: bool = False
    writable: bool = True

    @classmethod
    def whole_tree(cls, writable: bool = True) -> Scope:
        return cls("/", everything=True, writable=writable)

    def contains(self, path: str) -> bool:
        return self.everything or path.startswith(self.path)
