"""Skeletons: a part rendered once with slots for a customer's values, filled per mail.

Rendering (and CSS inlining above all) depends only on the variant and whether there is a
name, so the composer renders each combination once with placeholders and puts each
customer's values in. Quoted-printable encodes each line on its own, so the lines without a
slot are encoded once too (`EncodedSkeleton`); only the lines with a customer's value are
encoded per mail (encoding whole parts was two thirds of composing a mail).

The composer trusts skeletons only after checking, for hostile samples, that they give what
rendering and encoding each mail in full gives.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rollout.messages.wire import quoted_printable

# Placeholders for a customer's values in pre-rendered skeletons: plain lowercase letters,
# which no HTML serialiser escapes or re-cases and no text filter splits.
NAME_SLOT = "rolloutslotfirstnamezq"
ID_SLOT = "rolloutslotcustomeridzq"
_SLOTS = re.compile(f"({NAME_SLOT}|{ID_SLOT})")
# What str.splitlines() breaks at: a value holding one would change how the lines split.
_LINE_BREAK = re.compile("[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")

# A part rendered for stand-ins, split at the slots: text, slot, text, slot, ..., text.
Skeleton = tuple[str, ...]
Values = dict[str, str]  # slot -> the customer's value


def skeleton(rendered: str) -> Skeleton:
    return tuple(_SLOTS.split(rendered))


def fill(skeleton: Skeleton, values: Values) -> str:
    """The skeleton with each slot's value, in one pass: a value is never searched for slots."""
    parts = list(skeleton)
    parts[1::2] = [values[slot] for slot in skeleton[1::2]]
    return "".join(parts)


@dataclass(frozen=True)
class EncodedSkeleton:
    """A skeleton as quoted-printable: the runs of lines without a slot encoded once, the lines
    between them (each with a slot) kept as skeletons, encoded when filled."""

    whole: Skeleton
    runs: tuple[str, ...]  # encoded; one more than `lines`
    lines: tuple[Skeleton, ...]

    @classmethod
    def of(cls, whole: Skeleton) -> EncodedSkeleton:
        text = "".join(whole)
        if not text:
            return cls(whole, (quoted_printable(text),), ())
        runs: list[str] = []
        lines: list[Skeleton] = []
        fixed: list[str] = []
        for line in text.splitlines():
            if _SLOTS.search(line) is None:
                fixed.append(line)
                continue
            runs.append(_encoded(fixed))
            lines.append(skeleton(line))
            fixed = []
        runs.append(_encoded(fixed))
        return cls(whole, tuple(runs), tuple(lines))

    def fill(self, values: Values) -> str:
        """`quoted_printable(fill(whole, values))`, encoding only the lines with a value.

        The text splits into the skeleton's lines unless a value holds a line break or empties
        a line (then the breaks around it may merge, as "\\r" + "\\n"): such a mail is encoded
        whole.
        """
        filled = [fill(line, values) for line in self.lines]
        if not all(filled) or any(_LINE_BREAK.search(value) for value in values.values()):
            return quoted_printable(fill(self.whole, values))
        out = [self.runs[0]]
        for line, run in zip(filled, self.runs[1:], strict=True):
            out.append(quoted_printable(line))
            out.append(run)
        return "".join(out)


def _encoded(lines: list[str]) -> str:
    return "".join(quoted_printable(line) for line in lines)  # an empty line stays a line
