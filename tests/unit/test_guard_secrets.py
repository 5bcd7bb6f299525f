"""Secrets rail: vendor keys, tokens and key blocks found and masked; prose about them is not."""

import re

import pytest

from guard.rails import redact, secrets

PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7v0yxZ\nabc123==\n-----END RSA PRIVATE KEY-----"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("key AKIAIOSFODNN7EXAMPLE here", "aws_access_key_id"),
        ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "aws_secret_access_key"),
        ("token ghp_" + "a1B2c3D4e5" * 4, "github_token"),
        ("export OPENAI_API_KEY=sk-proj-abcdefghijklmnopqrstuvwxyz012345", "openai_key"),
        ("sk-ant-api03-abcdefghijklmnopqrstuvwxyz", "anthropic_key"),
        ("slack xoxb-123456789012-abcdefghijkl", "slack_token"),
        ("maps AIzaSyA1234567890abcdefghijklmnopqrstuv", "google_api_key"),
        ("stripe sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc", "stripe_key"),
        (f"session {JWT}", "jwt"),
        (PEM, "private_key"),
        ("db postgres://admin:s3cr3tP4ss@db.internal:5432/app", "url_credentials"),
        ("Authorization: Bearer abcdefghijklmnop1234567890", "bearer_token"),
        ('config password: "Xk9#mP2$vL8q"', "generic_secret"),
        ("hf_" + "A" * 10 + "b" * 10 + "C" * 14, "huggingface_token"),
    ],
)
def test_each_secret_kind_is_found(text: str, kind: str) -> None:
    assert [f.kind for f in secrets.scan(text).findings] == [kind]


def test_only_the_secret_part_is_masked() -> None:
    text = "use postgres://admin:s3cr3tP4ss@db:5432/app and password=Xk9#mP2$vL8q"
    assert redact(text, secrets.scan(text).findings) == (
        "use postgres://admin:[REDACTED:URL_CREDENTIALS]@db:5432/app and password=[REDACTED:GENERIC_SECRET]"
    )
    assert redact(PEM + "\nbye", secrets.scan(PEM + "\nbye").findings) == "[REDACTED:PRIVATE_KEY]\nbye"


@pytest.mark.parametrize(
    "text",
    [
        "Choose a password that is at least twelve characters long and unique.",
        "Set the token = placeholder and password = changeme in the example config.",
        "The API key goes in the Authorization header as a bearer token.",
        "def get_secret(name: str) -> str: return vault.read(name)",
        "Visit https://example.com/docs/getting-started for the tutorial.",
        "The skillset of a sk-8 skater is different.",
    ],
)
def test_prose_about_secrets_is_not_a_secret(text: str) -> None:
    assert secrets.scan(text).findings == ()


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("[docs](https://x.example/?token=abc123XYZ789def).", "[docs](https://x.example/?token=[M])."),
        ("https://x.example/?api_key=Zx81kLm02Qa&page=2#top", "https://x.example/?api_key=[M]&page=2#top"),
        ("(password=hunter2XY9zq), done", "(password=[M]), done"),
        ("{secret: Zx81kLm02Qa}", "{secret: [M]}"),
        ('password: "Xk9#mP2$vL8q)" ok', 'password: "[M]" ok'),  # quoted: the quote ends it
        ("password = p(a)ss9Word!x", "password = [M]"),  # brackets it opened are its own
        ("Authorization: Bearer abcdefghijklmnop1234567890.", "Authorization: Bearer [M]."),
        # A closing bracket inside a value is the value's own: the rest of the secret goes with it.
        ("password=P@ss)w0rd!23 ok", "password=[M] ok"),
        ("password=Xy7]kQ9pL2x4 ok", "password=[M] ok"),
        ("(password=P@ss)w0rd!23) ok", "(password=[M]) ok"),
        # `](` ends a value only inside a link's text: alone, the value went unredacted (its
        # part before `](`, "ab", fell under the floor and the rest stayed in the answer).
        ("Set password=ab](cdXy7Qz93Kd0pLm and go", "Set password=[M] and go"),
        ("[see](https://x.example) password=ab](cdXy7Qz93Kd0pLm ok", "[see](https://x.example) password=[M] ok"),
        ("[password=hunter2XY9zq](https://x.example) ok", "[password=[M]](https://x.example) ok"),
        ("[a [b] token=Zx81kLm02Qa9](https://x.example)", "[a [b] token=[M]](https://x.example)"),
    ],
)
def test_a_value_ends_where_its_context_ends_it(text: str, masked: str) -> None:
    """A new-user trial: `).` after a masked value went with it."""
    assert re.sub(r"\[REDACTED:[A-Z_]+\]", "[M]", redact(text, secrets.scan(text).findings)) == masked
