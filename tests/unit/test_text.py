"""Free text shown safely: one record, one line, nothing hidden, nothing lost."""

from __future__ import annotations

from orchestrator.text import markdown, one_line, terminal

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


# erase the line, cursor up, a green "ok", OSC 52 (write the clipboard), OSC 0 (the window
# title), C1 CSI, a bidi override, a carriage return
ATTACK = ("FAIL\x1b[2K\x1b[1A\r\x1b[32m  web-blue-1  ok\x1b[0m\x1b]52;c;cm0gLXJmIH4=\x07"
          "\x1b]0;owned\x07\x9b2J\u202e")


def test_terminal_shows_every_control_and_keeps_layout() -> None:
    shown = terminal(ATTACK + "\nnext\tcol\\n")
    assert "\x1b" not in shown and "\x07" not in shown and "\r" not in shown
    assert "\x9b" not in shown and "\u202e" not in shown
    assert "\\x1b[2K" in shown and "\\x1b]52;c;" in shown and "\\x1b]0;owned\\x07" in shown
    assert shown.endswith("\nnext\tcol\\n")  # layout kept, a typed backslash left as it is
    assert terminal("plain text, ünïcode 故障\n") == "plain text, ünïcode 故障\n"


def test_terminal_keeps_only_the_clis_own_colours() -> None:
    ours = "\x1b[31mFAIL\x1b[0m \x1b[1;32mok\x1b[22;39m"
    assert terminal(ours, colours=True) == ours
    # conceal, reverse, background, cursor moves and OSC are never "colours"
    for seq in ("\x1b[8m", "\x1b[7m", "\x1b[41m", "\x1b[2K", "\x1b[1A", "\x1b]0;t\x07"):
        assert "\x1b" not in terminal(seq, colours=True), seq
    assert "\x1b" not in terminal(ATTACK, colours=True).replace("\x1b[32m", "").replace(
        "\x1b[0m", "")
