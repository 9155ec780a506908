"""Free text shown safely: one record, one line, nothing hidden, nothing lost."""

from __future__ import annotations

from orchestrator.text import markdown, one_line

HOSTILE = "INC-1\nfake line: 42 rollback ok\r\x1b[2J\x1b]0;owned\x07\u2028\u202etxt.exe\x00\\n"


def test_hostile_reason_is_one_visible_line() -> None:
    shown = one_line(HOSTILE)
    assert "\n" not in shown and "\r" not in shown and "\x1b" not in shown
    assert shown.isprintable()
    assert shown == ("INC-1\\nfake line: 42 rollback ok\\r\\x1b[2J\\x1b]0;owned\\x07"
                     "\\u2028\\u202etxt.exe\\x00\\\\n")


def test_escaping_is_unambiguous() -> None:
    # a real newline and a typed backslash-n look different
    assert one_line("a\nb") != one_line("a\\nb")
    assert one_line("a\\nb") == "a\\\\nb"


def test_plain_text_and_unicode_are_left_alone() -> None:
    for text in ("INC-4711 rollback web", "Zürich Störung — 故障", "emoji 🚒", ""):
        assert one_line(text) == text
    assert one_line(None) == ""


def test_markdown_escapes_markup_pipes_and_html() -> None:
    assert markdown("a|b\nc") == "a\\|b\\nc"
    assert markdown("<script>x</script>") == "&lt;script&gt;x&lt;/script&gt;"
    assert markdown("[verified OK](https://evil.example/)") == (
        "\\[verified OK\\]\\(https://evil\\.example/\\)")
    assert markdown("**a** _b_ `c` # d + e - f ! g {h} &amp;") == (
        "\\*\\*a\\*\\* \\_b\\_ \\`c\\` \\# d \\+ e \\- f \\! g \\{h\\} &amp;amp;")
    assert markdown("\\") == "\\\\" and markdown(None) == ""
