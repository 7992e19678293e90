"""Turning any user text into the words a search looks for.

Questions are written as natural language as often as keywords, so every meaningful
term is a candidate (storage matches any of them, ranked by BM25); stop words are dropped
unless nothing else is left. Words only: quotes, operators and punctuation never reach the
backend as syntax (storage builds its own query from the words). Stemming happens in the
backend's index, which stems the terms too.
"""

from __future__ import annotations

import re

WORD = re.compile(r"\w+", re.UNICODE)

STOP_WORDS = frozenset(
    """
    a about above after again against all am an and any are aren as at be because been before being below
    between both but by can could did didn do does doesn doing don down during each few for from further had
    hadn has hasn have haven having he her here hers herself him himself his how i if in into is isn it its
    itself just let me more most mustn my myself no nor not now of off on once only or other our ours
    ourselves out over own re s same shan she should shouldn so some such t than that the their theirs them
    themselves then there these they this those through to too under until up very was wasn we were weren
    what when where which while who whom why will with won would wouldn you your yours yourself yourselves
    ll ve d m o y ain tell know did does ever
    """.split()
)
MAX_TERMS = 32


def terms(text: str) -> list[str]:
    """The distinct searchable words of `text`, stop words removed when others remain."""
    words: list[str] = []
    seen: set[str] = set()
    for w in WORD.findall(text.lower()):
        w = w.strip("_")
        if w and w not in seen:
            seen.add(w)
            words.append(w)
    content = [w for w in words if w not in STOP_WORDS]
    return (content or words)[:MAX_TERMS]
