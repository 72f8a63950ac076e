"""Does an answer decline? A refusal says so near its start, in the phrasings the project's own data uses."""

from __future__ import annotations

import re

REFUSAL_WINDOW = 160  # characters: a refusal says so at the start
REFUSAL = re.compile(
    r"\b(I can(?:no|')t|I can not|I won't|I will not|I(?:'m| am) (?:not able|unable)|I must decline)\b"
    r"|できません|お断りします|教えられません|(?:し|でき)かねます",  # しかねます: お答え(いた)しかねます and the like
    re.IGNORECASE,
)


def is_refusal(answer: str) -> bool:
    return bool(REFUSAL.search(answer[:REFUSAL_WINDOW]))
