"""Personal data and secrets in text: regexes plus validators, no models.

A match only counts when its validator agrees (Luhn for cards, mod-97 for IBANs, public
address ranges for IPs), so order numbers, private addresses and look-alikes stay quiet.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Match:
    kind: str          # check id, e.g. "pii_email"
    start: int
    end: int
    text: str


# Issuer prefixes and the lengths they use: a Luhn-valid number from a sum in a maths
# answer is not a card unless it also looks like one an issuer would print.
_CARD_IIN = re.compile(
    r"4\d{12}(?:\d{3}){0,2}"                                  # Visa 13/16/19
    r"|(?:5[1-5]\d{2}|222[1-9]|22[3-9]\d|2[3-6]\d{2}|27[01]\d|2720)\d{12}"  # Mastercard
    r"|3[47]\d{13}"                                            # Amex
    r"|3(?:0[0-5]|[68]\d)\d{11,16}"                             # Diners
    r"|35\d{14,17}"                                            # JCB
    r"|6(?:011|5\d{2}|4[4-9]\d)\d{12,15}"                       # Discover
    r"|62\d{14,17}"                                            # UnionPay
    r"|(?:5[06-9]|6\d)\d{10,17}")                               # Maestro


def _luhn_ok(raw: str) -> bool:
    digits = [int(c) for c in raw if c.isdigit()]
    if not 13 <= len(digits) <= 19 or len(set(digits)) == 1:
        return False
    if not _CARD_IIN.fullmatch("".join(map(str, digits))):
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


_IBAN_LEN = {  # country -> IBAN length (the common SEPA and nearby countries)
    "AD": 24, "AE": 23, "AT": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29, "CH": 21, "CY": 28,
    "CZ": 24, "DE": 22, "DK": 18, "EE": 20, "ES": 24, "FI": 18, "FR": 27, "GB": 22, "GI": 23,
    "GR": 27, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IS": 26, "IT": 27, "LI": 21, "LT": 20,
    "LU": 20, "LV": 21, "MC": 27, "MT": 31, "NL": 18, "NO": 15, "PL": 28, "PT": 25, "RO": 24,
    "SA": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TR": 26, "UA": 29,
}


def _iban_ok(raw: str) -> bool:
    s = re.sub(r"\s", "", raw).upper()
    want = _IBAN_LEN.get(s[:2])
    if want is not None and len(s) != want:
        return False
    if not 15 <= len(s) <= 34:
        return False
    moved = s[4:] + s[:4]
    try:
        return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1
    except ValueError:
        return False


def _ip_public(raw: str) -> bool:
    try:
        ip = ipaddress.ip_address(raw)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if not ip.is_global or ip.is_multicast:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        return ip not in ipaddress.ip_network("2001:db8::/32")  # documentation
    return True


def _phone_ok(raw: str) -> bool:
    digits = re.sub(r"\D", "", raw)
    if not 9 <= len(digits) <= 15:
        return False
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw.strip()):  # a date
        return False
    return len(set(digits)) > 2


_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_PATTERNS: list[tuple[str, re.Pattern[str], Callable[[str], bool] | None]] = [
    ("secret_private_key", re.compile(
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----(?:.*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----)?",
        re.S), None),
    ("secret_aws_key", re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])"), None),
    ("secret_token", re.compile(
        r"(?<![\w-])(?:"
        r"gh[pousr]_[A-Za-z0-9]{36,255}"
        r"|github_pat_[A-Za-z0-9_]{22,255}"
        r"|xox[bpas]-[A-Za-z0-9-]{10,}"
        r"|sk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}"
        r"|sk_live_[A-Za-z0-9]{16,}|rk_live_[A-Za-z0-9]{16,}"
        r"|AIza[0-9A-Za-z_-]{35}"
        r"|hf_[A-Za-z0-9]{30,}"
        r"|glpat-[A-Za-z0-9_-]{20,}"
        r")(?![\w-])"), None),
    ("pii_email", re.compile(
        r"(?<![\w.+-])[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,24}(?![\w-])"), None),
    ("pii_iban", re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?(?![A-Za-z0-9])"),
     _iban_ok),
    ("pii_credit_card", re.compile(r"(?<![+=*/×] )(?<![\d\-+=*/×])\d(?:[ -]?\d){12,18}(?![\d-])(?! ?[+=*/×])"),
     _luhn_ok),
    ("pii_ip", re.compile(
        rf"(?<![\d.]){_OCTET}(?:\.{_OCTET}){{3}}(?![\d.])"
        r"|(?<![:\w])(?:[0-9A-Fa-f]{1,4}:){2,7}(?::|[0-9A-Fa-f]{1,4})(?:[0-9A-Fa-f:]*)(?![:\w])"), _ip_public),
    ("pii_phone", re.compile(
        r"(?<![\w+(])(?:\+\d{1,3}[ .-]?)?\(\d{2,4}\)[ .-]?\d{2,4}(?:[ .-]\d{2,4}){1,3}(?![\w-])"
        r"|(?<![\w+.])(?:\+\d{1,3}[ .-]?)?\d{2,4}(?:[ .-]\d{2,4}){2,4}(?![\w-])"
        r"|(?<![\w+])\+\d{9,14}(?!\w)"), _phone_ok),
]

KINDS = tuple(k for k, _, _ in _PATTERNS)

PLACEHOLDERS = {
    "pii_email": "[EMAIL]", "pii_phone": "[PHONE]", "pii_credit_card": "[CARD]", "pii_iban": "[IBAN]",
    "pii_ip": "[IP]", "secret_aws_key": "[AWS_KEY]", "secret_private_key": "[PRIVATE_KEY]",
    "secret_token": "[TOKEN]",
}


_DIGIT = re.compile(r"\d").search
_TOKEN_PREFIXES = ("gh", "github_pat_", "xox", "sk-", "sk_live_", "rk_live_", "AIza", "hf_", "glpat-")
_TOKEN_PREFIX = re.compile("|".join(re.escape(p) for p in _TOKEN_PREFIXES)).search
_MIN_LEN = 5  # the shortest match of any pattern (an IPv6 such as "1:2::"): shorter text holds none
# Cheap substring tests that rule a pattern out: a regex with look-behinds costs seconds
# on a 50 MB field, `in` costs milliseconds.
_MAY_MATCH: dict[str, Callable[[str], bool]] = {
    "secret_private_key": lambda t: "PRIVATE KEY" in t,
    "secret_aws_key": lambda t: "AKIA" in t or "ASIA" in t,
    "secret_token": lambda t: _TOKEN_PREFIX(t) is not None,
    "pii_email": lambda t: "@" in t,
    "pii_iban": lambda t: _DIGIT(t) is not None,
    "pii_credit_card": lambda t: _DIGIT(t) is not None,
    "pii_ip": lambda t: ("." in t or ":" in t) and _DIGIT(t) is not None,
    "pii_phone": lambda t: _DIGIT(t) is not None,
}


def find_pii(text: str, kinds: set[str] | None = None) -> list[Match]:
    """Validated matches, earlier patterns winning where spans overlap (a key beats the
    phone-like digits inside it; a card beats a phone)."""
    if not isinstance(text, str) or len(text) < _MIN_LEN:
        return []
    taken: list[tuple[int, int]] = []
    out: list[Match] = []
    for kind, rx, ok in _PATTERNS:
        if (kinds is not None and kind not in kinds) or not _MAY_MATCH[kind](text):
            continue
        for m in rx.finditer(text):
            s, e = m.span()
            if any(s < te and ts < e for ts, te in taken):
                continue
            if ok is not None and not ok(m.group()):
                continue
            taken.append((s, e))
            out.append(Match(kind, s, e, m.group()))
    return sorted(out, key=lambda m: m.start)


def redact(text: str, kinds: set[str] | None = None) -> tuple[str, int]:
    """Text with each match replaced by a typed placeholder, and the number replaced."""
    matches = find_pii(text, kinds)
    if not matches:
        return text, 0
    parts, pos = [], 0
    for m in matches:
        parts.append(text[pos:m.start])
        parts.append(PLACEHOLDERS[m.kind])
        pos = m.end
    parts.append(text[pos:])
    return "".join(parts), len(matches)
