"""PII rail: each entity found with its position; numbers that only look like PII are not."""

import pytest

from guard.rails import pii, redact


def kinds(text: str) -> list[str]:
    return [f.kind for f in pii.scan(text).findings]


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("write to jane.doe+news@example.co.uk today", "email"),
        ("call +1 (555) 123-4567 after six", "phone"),
        ("call 555-123-4567 after six", "phone"),
        ("ring +44 20 7946 0958", "phone"),
        ("or +4915123456789", "phone"),
        ("card 4111 1111 1111 1111 exp 12/27", "credit_card"),
        ("card 5500-0000-0000-0004", "credit_card"),
        ("amex 378282246310005", "credit_card"),
        ("IBAN DE89 3704 0044 0532 0130 00 please", "iban"),
        ("IBAN GB82WEST12345698765432", "iban"),
        ("ssn 123-45-6789", "ssn"),
        ("server at 192.168.1.20 is down", "ip_address"),
        ("v6 2001:db8::8a2e:370:7334 too", "ip_address"),
    ],
)
def test_each_entity_is_found(text: str, kind: str) -> None:
    assert kinds(text) == [kind]


@pytest.mark.parametrize(
    "text",
    [
        "order 4111 1111 1111 1112 failed Luhn",
        "IBAN DE89 3704 0044 0532 0130 01 has a bad check sum",
        "000-12-3456 and 666-12-3456 and 123-00-4567 are never issued",
        "Python 3.11.7 released on 2023-12-04 at 10:30:45",
        "version 1.2.3.4.5 of the tool, 256.1.1.1 is not an address",
        "The recipe needs 200 g flour, 2 eggs and 100 ml milk; bake 25-30 minutes at 180 C.",
        "Invoice 2024-0042, total 1 234.56 EUR, ref 12345",
        "Use the @decorator syntax; email me? No: user@localhost has no domain",
    ],
)
def test_look_alikes_are_not_pii(text: str) -> None:
    assert kinds(text) == []


@pytest.mark.parametrize(
    "text",
    [
        "Clone https://deploy:Tr0ub4dor3x@git.example/repo",
        "Use ssh://git@github.com/org/repo.git",
        "ftp://ann@files.example/",
    ],
)
def test_a_urls_user_and_host_are_no_email_address(text: str) -> None:
    """A new-user trial: `pw@host` in `https://user:pw@host/` was redacted as an e-mail, the host
    with it; the secrets rail masks the password (`url_credentials`)."""
    assert kinds(text) == []


def test_a_mailto_address_is_still_an_email_address() -> None:
    assert kinds("Write to mailto:jane@example.com or jane@example.com.") == ["email", "email"]


def test_overlaps_keep_the_checked_entity_and_redaction_masks_each() -> None:
    text = "Card 4111 1111 1111 1111, mail a@b.io."
    found = pii.scan(text)
    assert [f.kind for f in found.findings] == ["credit_card", "email"]
    assert redact(text, found.findings) == "Card [REDACTED:CREDIT_CARD], mail [REDACTED:EMAIL]."


def test_only_the_entities_asked_for_are_scanned() -> None:
    assert kinds("a@b.io and 10.0.0.1") == ["email", "ip_address"]
    assert [f.kind for f in pii.scan("a@b.io and 10.0.0.1", ["email"]).findings] == ["email"]


def test_check_digit_algorithms() -> None:
    assert pii.luhn_valid("79927398713") and not pii.luhn_valid("79927398710")
    assert pii.iban_valid("GB82 WEST 1234 5698 7654 32") and not pii.iban_valid("GB82 WEST 1234 5698 7654 33")
