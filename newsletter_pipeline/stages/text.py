"""Characters that no output can hold: one rule for the parser (cleaning fields) and the sinks (cells).

XML 1.0, which a workbook is made of, allows tab, line feed, carriage return, U+0020..U+D7FF, U+E000..U+FFFD
and U+10000..U+10FFFF. Everything else (C0 controls, lone surrogates, U+FFFE, U+FFFF) breaks the file for good.
Unicode's other noncharacters (U+FDD0..U+FDEF, U+nFFFE and U+nFFFF of every plane) are XML-legal but never text:
they go too.
"""

from __future__ import annotations

import re
import unicodedata

# Controls read as word breaks: "a\x00b" is two words, not one.
CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
NONCHARACTERS = re.compile(
    "[\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff"
    + "".join(f"{chr(plane << 16 | 0xFFFE)}{chr(plane << 16 | 0xFFFF)}" for plane in range(1, 17))
    + "]"
)


def storable(text: str) -> str:
    """`text` with controls as spaces and surrogates and noncharacters removed: safe for XML, Parquet and Sheets."""
    return NONCHARACTERS.sub("", CONTROLS.sub(" ", text))


def visible(text: str) -> bool:
    """Whether `text` shows anything: a headline of zero-width spaces, joiners or marks alone is empty."""
    return any(unicodedata.category(char)[0] not in "CZ" for char in text)
