"""Coarse action classes (for the Global Alignment loss) from free-text mocap descriptions."""

from __future__ import annotations

import re

ACTION_CLASSES: tuple[str, ...] = (
    "walk", "run", "jump", "dance", "climb", "ball_sport", "fight", "reach_bend", "other",
)  # fmt: skip

# Ordered rules: the first class whose pattern matches the lower-cased description wins.
_RULES: tuple[tuple[str, str], ...] = (
    ("dance", r"dance|salsa|indian/|pirouette|arabesque"),
    ("fight", r"punch|strike|kick|sword|martial/|box|karate|oiduki|geri|empi|syutouuke|gedanbarai|heian"),
    ("ball_sport", r"basketball|dribble|shoot|soccer|golf|tennis|throw"),
    ("climb", r"climb|playground|ladder"),
    ("jump", r"jump|hop|leap"),
    ("run", r"\brun|jog|sprint"),
    ("walk", r"walk|stride|navigate|step"),
    ("reach_bend", r"reach|grab|bend|scoop|lift|wash|pick|sweep"),
)


def action_class(description: str) -> int:
    """Index into ACTION_CLASSES for a description ('other' when nothing matches)."""
    d = description.lower()
    for name, pat in _RULES:
        if re.search(pat, d):
            return ACTION_CLASSES.index(name)
    return ACTION_CLASSES.index("other")
