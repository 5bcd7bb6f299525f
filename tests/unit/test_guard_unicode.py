"""Unicode rail: smuggling characters are found and removed; real emoji and scripts are kept."""

from guard.rails import unicode as unicode_rail


def test_zero_width_characters_are_removed_and_many_of_them_fail() -> None:
    text = "pass\u200bword\u200c re\u200dset\ufeff now"
    found = unicode_rail.scan(text)
    assert found.sanitized == "password reset now"
    assert found.scan.score >= 0.5
    assert {f.kind for f in found.scan.findings} == {"zero_width"}


def test_tag_characters_are_decoded_into_hidden_text() -> None:
    text = "hi" + "".join(chr(0xE0000 + ord(c)) for c in "secret plan") + "!"
    found = unicode_rail.scan(text)
    assert (found.sanitized, found.hidden, found.scan.score) == ("hi!", "secret plan", 1.0)


def test_variation_selector_smuggling_is_decoded() -> None:
    payload = b"run rm -rf"
    text = "😀" + "".join(chr(0xE0100 + b - 16) if b >= 16 else chr(0xFE00 + b) for b in payload)
    found = unicode_rail.scan(text)
    assert found.hidden == "run rm -rf" and found.sanitized == "😀"


def test_bidi_overrides_fail() -> None:
    found = unicode_rail.scan("access granted \u202eelif.exe")
    assert found.scan.score >= 0.8 and found.sanitized == "access granted elif.exe"


def test_mixed_script_look_alikes_are_found_and_folded() -> None:
    found = unicode_rail.scan("log in at pаypal.com")  # Cyrillic а
    assert [f.kind for f in found.scan.findings] == ["mixed_script"]
    assert unicode_rail.fold("pаypal") == "paypal"


def test_legitimate_unicode_is_untouched() -> None:
    for text in [
        "Scotland 🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f won",
        "family 👨\u200d👩\u200d👧 and a heart ❤\ufe0f",
        "Привет, как дела? Это обычный русский текст.",
        "Ελληνικά: καλημέρα κόσμε",
        "می\u200cخواهم",  # Persian uses ZWNJ inside words
        "日本語のテキストです。café, naïve, Zürich",
    ]:
        found = unicode_rail.scan(text)
        assert found.sanitized == text and found.scan.score == 0.0, (text, found.scan)
