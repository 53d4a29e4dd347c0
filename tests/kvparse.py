"""A reader of crosvm's key=value syntax, written from the grammar notes, to check our output.

It accepts exactly: items separated by ','; an item is KEY=VALUE, a bare KEY, or (first only)
a bare VALUE; a VALUE is "double quoted" (\\" and \\\\ escapes), 'single quoted' (no escapes),
a balanced [bracketed list] kept raw, or a run of characters up to ',', '[' or ']'.
"""

from __future__ import annotations

KEY_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


class KvSyntaxError(ValueError):
    pass


def _value(text: str, i: int) -> tuple[str, int]:
    if i < len(text) and text[i] == '"':
        out, i = [], i + 1
        while i < len(text) and text[i] != '"':
            if text[i] == "\\":
                if i + 1 >= len(text) or text[i + 1] not in '"\\':
                    raise KvSyntaxError(f"bad escape in {text!r}")
                i += 1
            out.append(text[i])
            i += 1
        if i >= len(text):
            raise KvSyntaxError(f"unterminated quote in {text!r}")
        return "".join(out), i + 1
    if i < len(text) and text[i] == "'":
        end = text.find("'", i + 1)
        if end < 0:
            raise KvSyntaxError(f"unterminated quote in {text!r}")
        return text[i + 1 : end], end + 1
    if i < len(text) and text[i] == "[":
        depth, start = 0, i
        while i < len(text):
            depth += {"[": 1, "]": -1}.get(text[i], 0)
            i += 1
            if depth == 0:
                return text[start:i], i
        raise KvSyntaxError(f"unbalanced brackets in {text!r}")
    start = i
    while i < len(text) and text[i] not in ",[]":
        i += 1
    return text[start:i], i


def parse(text: str) -> list[tuple[str | None, str]]:
    """[(key or None for a positional first value, value)]; a bare key gives "true"."""
    items: list[tuple[str | None, str]] = []
    i = 0
    while True:
        j = i
        while j < len(text) and text[j] in KEY_CHARS:
            j += 1
        if j < len(text) and text[j] == "=" and j > i:
            key: str | None = text[i:j]
            value, i = _value(text, j + 1)
        else:
            value, i = _value(text, i)
            key, value = (value, "true") if items else (None, value)
        items.append((key, value))
        if i == len(text):
            return items
        if text[i] != ",":
            raise KvSyntaxError(f"expected ',' at {i} in {text!r}")
        i += 1
