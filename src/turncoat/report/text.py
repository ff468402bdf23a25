"""Model text made safe to show: what escaping leaves dangerous in a page is text that changes how other text looks.

HTML escaping (Jinja's autoescape, the DOM's textContent) stops markup; it does not stop a bidirectional override
(U+202E) from reversing what follows it, nor invisible controls from hiding text. Both are shown as visible marks
instead, so a reader sees that they were there.
"""

from __future__ import annotations

import re

# Bidirectional embeddings, overrides and isolates, the implicit direction marks, and C0/C1 controls but tab and
# newline (and the zero-width characters that hide text between letters).
_INVISIBLE = re.compile("[\u202a-\u202e\u2066-\u2069\u200b-\u200f\u061c\ufeff\x00-\x08\x0b-\x1f\x7f-\x9f]")


def visible(text: str | None) -> str:
    """`text` with each bidi control or invisible character replaced by a visible ⟦U+XXXX⟧ mark."""
    if not text:
        return "" if text is None else text
    return _INVISIBLE.sub(lambda match: f"⟦U+{ord(match.group()):04X}⟧", text)
