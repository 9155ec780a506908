"""Free text (reasons, actors, messages) shown safely: one record stays one line.

Free text is stored exactly as given (the audit chain keeps what was said) and escaped only
when shown, in `history`, reports and tables, so that `--reason $'INC-1\\nfake line'`
cannot print a second line that looks like a record of its own, and escape sequences
cannot repaint the terminal. Stdlib only.
"""

from __future__ import annotations

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}
# Cc: control characters (C0, DEL, C1); Cf: format characters (bidi overrides, zero-width
# joiners, ...: text that does not show what it says); Zl/Zp: line/paragraph separators
_HIDDEN = frozenset({"Cc", "Cf", "Zl", "Zp"})


def one_line(text: str | None) -> str:
    """`text` with backslashes, control, format and line-separator characters written as
    visible escapes (\\n, \\x1b, \\u2028, ...): unambiguous, and always one line."""
    if text is None:
        return ""
    if text.isprintable() and "\\" not in text:
        return text  # the common case, fast
    return "".join(_visible(ch) for ch in text)


def _visible(ch: str) -> str:
    import unicodedata  # only for text that needs escaping

    if ch in _NAMED:
        return _NAMED[ch]
    if unicodedata.category(ch) in _HIDDEN:
        code = ord(ch)
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    return ch


# Markdown's punctuation that can start markup (emphasis, links, images, headings, lists,
# tables, code) is backslash-escaped; `<`, `>` and `&` become HTML entities, so raw HTML
# (`<script>`, `<img onerror>`) and entity tricks show as text in every renderer
_MARKDOWN = str.maketrans(
    {**{c: "\\" + c for c in "`*_{}[]()#+-.!|"}, "<": "&lt;", ">": "&gt;", "&": "&amp;"}
)


def markdown(text: str | None) -> str:
    """`one_line`, then every Markdown/HTML markup character escaped: safe as inline text
    and as a table cell (`|` too); what a reader sees is exactly `text`."""
    return one_line(text).translate(_MARKDOWN)
