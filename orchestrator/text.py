"""Free text (reasons, actors, messages) shown safely: one record stays one line.

Free text is stored exactly as given (the audit chain keeps what was said) and escaped only
when shown, in `history`, reports and tables, so that `--reason $'INC-1\\nfake line'`
cannot print a second line that looks like a record of its own, and escape sequences
cannot repaint the terminal. Stdlib only.

The one policy for text from hosts, feeds and people: control, format and line-separator
characters are shown as visible escapes (ESC as `\\x1b`), never interpreted. `one_line` for
a field (a check's evidence, a package name, a reason); `terminal` for whole output on its
way to a terminal (the CLI's streams: newlines, tabs and the CLI's own colours kept);
`markdown` for the Markdown report.
"""

from __future__ import annotations

import re

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


# The CLI's own styles (click.style, rich): Select Graphic Rendition with foreground colours,
# bold, dim, italic, underline and their resets; no background, conceal, blink or reverse
_SGR = re.compile(r"\x1b\[([0-9;]{0,40})m")
_SGR_KEPT = frozenset(
    {"", "0", "1", "2", "3", "4", "22", "23", "24", "39"}
    | {str(n) for n in (*range(30, 38), *range(90, 98))}
)
_PLAIN = re.compile(r"[\n\t\x20-\x7e]*")


def terminal(text: str, *, colours: bool = False) -> str:
    """`text` for a terminal: newlines and tabs kept, every other control, format and
    line-separator character (ESC, BEL, CR, C1, bidi overrides, ...) written as a visible
    escape, so no sequence can erase lines, move the cursor, set the title or write the
    clipboard (OSC 52). `colours`: colour sequences of the CLI's own styles are kept."""
    if _PLAIN.fullmatch(text):
        return text  # the common case, fast
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\x1b" and colours:
            m = _SGR.match(text, i)
            if m and all(p in _SGR_KEPT for p in m.group(1).split(";")):
                out.append(m.group())
                i = m.end()
                continue
        out.append(ch if ch in "\n\t\\" else _visible(ch))
        i += 1
    return "".join(out)
