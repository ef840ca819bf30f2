"""PII and secrets: validated matches only, and redaction with typed placeholders."""
import pytest

from engine.data.checks import run_checks
from engine.data.pii import find_pii, redact


def kinds(text):
    return [(m.kind, m.text) for m in find_pii(text)]


@pytest.mark.parametrize("text,kind,match", [
    ("write to maria.lopez@example.com today", "pii_email", "maria.lopez@example.com"),
    ("call +1 415 555 0132", "pii_phone", "+1 415 555 0132"),
    ("or (020) 7946 0958", "pii_phone", "(020) 7946 0958"),
    ("card 4111 1111 1111 1111 expires", "pii_credit_card", "4111 1111 1111 1111"),
    ("amex 3782-822463-10005", "pii_credit_card", "3782-822463-10005"),
    ("iban GB82WEST12345698765432", "pii_iban", "GB82WEST12345698765432"),
    ("iban GB82 WEST 1234 5698 7654 32.", "pii_iban", "GB82 WEST 1234 5698 7654 32"),
    ("dns 8.8.8.8 is public", "pii_ip", "8.8.8.8"),
    ("v6 2001:4860:4860::8888 too", "pii_ip", "2001:4860:4860::8888"),
    ("key AKIAIOSFODNN7EXAMPLE", "secret_aws_key", "AKIAIOSFODNN7EXAMPLE"),
    ("tok ghp_7eyyPX3vVDNJ2YtWd0B0LsWVZxw0rDprkFb2", "secret_token", "ghp_7eyyPX3vVDNJ2YtWd0B0LsWVZxw0rDprkFb2"),
    ("slack xoxb-123456789012-abcdefABCDEF", "secret_token", "xoxb-123456789012-abcdefABCDEF"),
    ("openai sk-proj-abcdefghijklmnopqrstuvwx12", "secret_token", "sk-proj-abcdefghijklmnopqrstuvwx12"),
    ("stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc", "secret_token", "sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
    ("google AIzaSyA-1234567890abcdefghijklmnopqrstu", "secret_token", "AIzaSyA-1234567890abcdefghijklmnopqrstu"),
    ("hf hf_abcdefghijklmnopqrstuvwxyzABCDEFGH", "secret_token", "hf_abcdefghijklmnopqrstuvwxyzABCDEFGH"),
    ("gitlab glpat-abcdefghij0123456789", "secret_token", "glpat-abcdefghij0123456789"),
])
def test_real_pii_and_secrets_are_found(text, kind, match):
    assert (kind, match) in kinds(text)


def test_private_key_block_is_found_whole():
    text = "x\n-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----\ny"
    (m,) = find_pii(text)
    assert m.kind == "secret_private_key" and m.text.endswith("-----END RSA PRIVATE KEY-----")


@pytest.mark.parametrize("text", [
    "order 1234567812345678 shipped",          # 16 digits, Luhn fails
    "card 4111 1111 1111 1112",                # one digit off
    "iban GB82WEST12345698765433",             # wrong checksum
    "hosts 10.0.0.1 and 192.168.1.1",          # private
    "loopback 127.0.0.1, link-local 169.254.1.1, docs 203.0.113.7 and 2001:db8::1",
    "v6 ::1 and fe80::1",
    "on 2024-01-05 at 10:30, version 3.14",
    "472547338 + 960397912423686 = 960398384971024",
    "not a mail: user@localhost or @handle",
])
def test_look_alikes_are_not_pii(text):
    assert kinds(text) == []


def test_redact_replaces_each_match_with_a_typed_placeholder():
    text = "mail a.b@example.com, card 4111-1111-1111-1111, ip 8.8.8.8, key AKIAIOSFODNN7EXAMPLE, 10.0.0.1 stays"
    out, n = redact(text)
    assert n == 4
    assert out == "mail [EMAIL], card [CARD], ip [IP], key [AWS_KEY], 10.0.0.1 stays"
    assert redact("nothing here") == ("nothing here", 0)


def test_findings_point_at_field_and_span_without_leaking_value():
    rows = [{"messages": [{"role": "user", "content": "reach me at tom.b@example.org"},
                          {"role": "assistant", "content": "ok"}]}]
    (f,) = [x for x in run_checks(rows, [1], "chat") if x.check == "pii_email"]
    text = rows[0]["messages"][0]["content"]
    assert f.field == "messages[0].content" and text[f.span[0]:f.span[1]] == "tom.b@example.org"
    assert "tom.b@example.org" not in f.message
