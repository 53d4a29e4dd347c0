"""Output of an untrusted guest, made safe to show on a terminal (docs/channel.md says what
passes)."""

from __future__ import annotations

import codecs
import re
import unicodedata

_TEXT, _ESC, _CSI, _ESC_INTERMEDIATE, _STRING, _STRING_ESC = range(6)
#: Longest escape sequence followed; a longer one is abandoned (what remains prints as text).
MAX_SEQUENCE = 4096
# Everything but TAB and LF among C0, DEL and C1 (CR is kept only before LF).
_SPECIAL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
#: Unicode categories removed from text: format controls (bidi embeddings, overrides and
#: isolates, marks, zero-width characters, tags) and the line and paragraph separators, all of
#: which reorder, hide or break what a terminal shows. Looked up per character, so that the
#: filter follows the Unicode version of the Python it runs on.
FORMAT_CATEGORIES = frozenset({"Cf", "Zl", "Zp"})
_C1_STRINGS = frozenset("\x90\x98\x9d\x9e\x9f")  # DCS, SOS, OSC, PM, APC
_STRING_STARTS = frozenset("]PX^_")  # their 7-bit forms after ESC


class TerminalFilter:
    """Makes a byte stream safe to show on a terminal, chunk by chunk.

    The stream is decoded as UTF-8 (invalid bytes become U+FFFD). Escape sequences (ESC and
    C1 introduced: CSI, OSC, DCS, SOS, PM, APC and the short ones) are removed whole, with
    their parameters and strings; other control characters are removed, except tab and
    newline. A carriage return passes only right before a newline (CR LF); any other one
    becomes a newline, so that nothing can return to the start of a line and write over it.
    Unicode format characters (:data:`FORMAT_CATEGORIES`) are removed. The result is the same
    however the stream is split into chunks.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._state = _TEXT
        self._length = 0
        self._carriage_return = False  # a CR ended the last chunk: is an LF next?

    def feed(self, data: bytes) -> bytes:
        return self._filter(self._decoder.decode(data)).encode()

    def flush(self) -> bytes:
        """The end of the stream: what an incomplete UTF-8 sequence at the end becomes."""
        text = self._filter(self._decoder.decode(b"", True))
        if self._carriage_return:  # a CR at the very end would let what follows overwrite
            text += "\n"
            self._carriage_return = False
        self._state = _TEXT
        return text.encode()

    def _enter(self, state: int) -> None:
        self._state = state
        self._length = 0

    def _filter(self, text: str) -> str:
        out: list[str] = []
        i, n = 0, len(text)
        if self._carriage_return and text:
            self._carriage_return = False
            if text[0] == "\n":
                out.append("\r\n")
                i = 1
            else:
                out.append("\n")
        while i < n:
            if self._state == _TEXT:
                match = _SPECIAL.search(text, i)
                if match is None:
                    out.append(_visible(text[i:]))
                    break
                out.append(_visible(text[i : match.start()]))
                ch = text[match.start()]
                i = match.start() + 1
                if ch == "\r":
                    if i == n:
                        self._carriage_return = True
                    elif text[i] == "\n":
                        out.append("\r\n")
                        i += 1
                    else:
                        out.append("\n")
                elif ch == "\x1b":
                    self._enter(_ESC)
                elif ch == "\x9b":
                    self._enter(_CSI)
                elif ch in _C1_STRINGS:
                    self._enter(_STRING)
                continue  # any other control character is dropped
            ch = text[i]
            i += 1
            self._length += 1
            if self._length > MAX_SEQUENCE:
                self._enter(_TEXT)
                continue
            code = ord(ch)
            if self._state == _ESC:
                if ch == "[":
                    self._enter(_CSI)
                elif ch in _STRING_STARTS:
                    self._enter(_STRING)
                elif 0x20 <= code <= 0x2F:
                    self._state = _ESC_INTERMEDIATE
                elif 0x30 <= code <= 0x7E or ch == "\x1b":
                    self._state = _TEXT if ch != "\x1b" else _ESC
                else:
                    self._state = _TEXT
                    i -= 1  # not a sequence: look at this character again as text
            elif self._state in (_CSI, _ESC_INTERMEDIATE):
                if 0x20 <= code <= 0x2F or (self._state == _CSI and 0x30 <= code <= 0x3F):
                    continue
                self._state = _TEXT
                if not 0x30 <= code <= 0x7E:
                    i -= 1  # broken off by something else: look at it again as text
            elif self._state == _STRING:
                if ch in ("\x07", "\x9c"):
                    self._state = _TEXT
                elif ch == "\x1b":
                    self._state = _STRING_ESC
            elif ch == "\\":  # _STRING_ESC: ESC \\ is the string terminator
                self._state = _TEXT
            else:
                self._state = _ESC  # the string ended by a new escape sequence
                i -= 1
        return "".join(out)


def _visible(text: str) -> str:
    """``text`` without its Unicode format characters."""
    if text.isascii():
        return text
    # Each distinct character is looked up once: text holds few of them, however long it is.
    drop: dict[int, None] = {
        ord(ch): None
        for ch in set(text)
        if not ch.isascii() and unicodedata.category(ch) in FORMAT_CATEGORIES
    }
    return text.translate(drop) if drop else text


def neutralise(text: str) -> str:
    """A message from the guest, safe to print anywhere (one complete piece of text)."""
    f = TerminalFilter()
    return (f.feed(text.encode("utf-8", "replace")) + f.flush()).decode()
