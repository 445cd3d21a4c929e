"""Redaction: recall on a generated set of planted secrets, false positives on ordinary prose.

`python tests/fixtures/secrets/planted.py` prints the same figures; `pytest -s` shows them here.
"""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from mothbrain.config import RedactionConfig
from mothbrain.data.redact import PLACEHOLDER_RE, redact, redact_many

_spec = importlib.util.spec_from_file_location(
    "planted", Path(__file__).parents[1] / "fixtures" / "secrets" / "planted.py"
)
planted = importlib.util.module_from_spec(_spec)
sys.modules["planted"] = planted
_spec.loader.exec_module(planted)

CFG = RedactionConfig()


def _redact(text: str) -> str:
    return redact(text, CFG)[0]


def test_planted_secrets_recall_and_false_positive_rate():
    m = planted.measure(_redact)
    print("\n" + planted.format_measure(m))
    assert m["planted"] >= 200
    assert m["recall"] >= 0.99, m["missed"][:5]
    assert m["innocent_fp_rate"] < 0.01, m["innocent_changed"]
    assert m["corpus_lines"] > 500 and m["corpus_fp_rate"] < 0.01, m["corpus_changed"]
    assert m["corpus_pii_lines"] >= 2 and not m["corpus_pii_missed"]


def test_recall_per_type_over_more_seeds():
    """More variety than the fixed set: every type, several seeds, recall per type."""
    hits, totals = Counter(), Counter()
    for seed in range(3):
        for kind, text, values in planted.cases(seed=seed, per_type=20):
            totals[kind] += 1
            out = _redact(text)
            hits[kind] += not any(v in out for v in values)
    low = {k: f"{hits[k]}/{totals[k]}" for k in totals if hits[k] / totals[k] < 0.97}
    assert not low
    assert sum(hits.values()) / sum(totals.values()) >= 0.99


@pytest.mark.parametrize(
    "text, kind",
    [
        ("key sk-proj-AbC123dEf456GhI789jKl012MnO345pQr678StU901vWx", "openai_key"),
        ("sk-ant-api03-" + "aB3_" * 20 + "xyzAA", "anthropic_key"),
        ("id AKIAIOSFODNN7EXAMPLE", "aws_access_key"),
        ("token=ghp_" + "a1B2" * 9, "github_token"),
        ("github_pat_11ABCDEFG0123456789abc_" + "x9" * 29 + "y", "github_token"),
        ("xoxb-1234567890-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", "slack_token"),
        ("https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX", "slack_webhook"),
        ("AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q", "google_api_key"),
        ("stripe.api_key = 'sk_live_4eC39HqLyjWDarjtT1zdp7dc'", "stripe_key"),
        ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U", "jwt"),
        (
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----",
            "private_key",
        ),
        ("postgres://moth:Tide-2024!x@db.internal:5432/archive", "url_password"),
        ('DB_PASSWORD="Kiln7839!"', "password"),
        ("api_key: 9f8e7d6c5b4a39281706f5e4d3c2b1a0", "password"),
        ("Authorization: Bearer abcdef1234567890abcdef1234", "bearer_token"),
        ("mail tomas.reyes@harbourtown.example today", "email"),
        ("call +44 20 7946 0958 now", "phone"),
        ("or (415) 555-0132", "phone"),
        ("hf_AbCdEfGhIjKlMnOpQrStUvWxYz01234567", "huggingface_token"),
    ],
)
def test_each_type_gets_its_placeholder(text, kind):
    out, counts = redact(text, CFG)
    assert counts.get(kind, 0) >= 1, (out, counts)
    assert ("<email>" if kind == "email" else "<phone>" if kind == "phone" else f"<secret:{kind}>") in out


@pytest.mark.parametrize(
    "line",
    [
        "On 2025-05-08 at 19:30 the council met; the vote was 05/01/2024.",
        "Version 1.2.3 and v10.4.12; pip install torch==2.13.0",
        "ISBN 978-3-16-148410-0, colour #1e90ff, commit 3f786850e387550fdab836ed7e6dc881de23001b",
        "Request 550e8400-e29b-41d4-a716-446655440000 took 30 s; cost $1,299.00; 1 234 567 people.",
        "password = getpass.getpass()  # never a literal",
        "The secret of good compost is patience; the key idea is forgetting.",
        "max_tokens: 512, token_count = 2048",
        "Follow @harbourtown; icon lantern@2x.png",
    ],
)
def test_ordinary_text_is_left_alone(line):
    assert _redact(line) == line


def test_surrounding_text_stays_readable():
    text = 'Use "sk-proj-AbC123dEf456GhI789jKl012MnO345pQr678StU901vWx" for now, then mail ana.li@mail.example.org.'
    assert _redact(text) == 'Use "<secret:openai_key>" for now, then mail <email>.'


def test_aws_secret_near_its_key_id():
    text = "creds: AKIAIOSFODNN7EXAMPLE / wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    out, counts = redact(text, CFG)
    assert "wJalrXUtnFEMI" not in out and counts == {"aws_access_key": 1, "aws_secret_key": 1}


def test_secrets_at_the_edge_of_their_trigger_gate():
    """A keyword's operator and a URL password's "@" as far from the trigger as the patterns allow
    (the trigger gate must not skip them), and the same text one step too far left alone."""
    far_operator = 'passphrase_for_the_prod_server"]    =    Zq8uXk2LmP0rT5vW'  # kw end + 20 + 2 + 4
    assert _redact(f"notes {far_operator} end") == f"notes {far_operator[:-16]}<secret:password> end"
    assert _redact('notes passphrase_for_the_prod_server"]     = Zq8uXk2LmP0rT5vW end').endswith("Zq8uXk2LmP0rT5vW end")
    user, password = "u" * 100, "p4ss" * 64  # 100 + ":" + 256 characters before the "@"
    url = f"https://{user}:{password}@db.example.com/x"
    assert _redact(f"see {url}") == "see " + url.replace(password, "<secret:url_password>")
    assert _redact(f"see https://{user}:{password}x@db.example.com/x").count(password) == 1


def test_unterminated_private_key_runs_to_blank_line():
    text = "key:\n-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA1234\nabcdEFGH5678\n\nAfter the key."
    out = _redact(text)
    assert "MIIEpAIB" not in out and "abcdEFGH" not in out and out.endswith("After the key.")


def test_config_switches_and_allow_list():
    text = "write to moth@harbour.example or call 020 7946 0958; key sk_live_4eC39HqLyjWDarjtT1zdp7dc"
    assert redact(text, RedactionConfig(enabled=False)) == (text, {})
    out, counts = redact(text, RedactionConfig(emails=False, phones=False))
    assert "moth@harbour.example" in out and "020 7946 0958" in out and counts == {"stripe_key": 1}
    out, counts = redact(text, RedactionConfig(allow=["moth@harbour.example"]))
    assert "moth@harbour.example" in out and "email" not in counts and counts["phone"] == 1


def test_redaction_is_idempotent_and_placeholders_are_recognised():
    for _, text, _ in planted.cases(seed=7, per_type=3):
        once = _redact(text)
        assert _redact(once) == once
    assert PLACEHOLDER_RE.fullmatch("<secret:openai_key>") and PLACEHOLDER_RE.fullmatch("<phone>")


def test_counts_by_type():
    text = "a@b.example, c@d.example and +1 (415) 555-0132"
    out, counts = redact(text, CFG)
    assert counts == {"email": 2, "phone": 1} and out == "<email>, <email> and <phone>"


def test_non_ascii_text_is_handled():
    text = "İstanbul notes — contact ayşe@örnek.example or token=ghp_" + "Zz09" * 9
    out = _redact(text)
    assert "ghp_" not in out and "ayşe" not in out and out.startswith("İstanbul notes")


def test_report_per_kind_counts_match_placeholders():
    counts_total: dict[str, int] = defaultdict(int)
    out_all = []
    for _, text, _ in planted.cases(seed=3, per_type=5):
        out, counts = redact(text, CFG)
        out_all.append(out)
        for k, v in counts.items():
            counts_total[k] += v
    placeholders = Counter(m.group(0) for o in out_all for m in PLACEHOLDER_RE.finditer(o))
    assert sum(placeholders.values()) == sum(counts_total.values())


def test_redact_many_equals_one_text_at_a_time():
    """A document's texts redacted in one pass give what each text redacted alone gives."""
    import random

    texts = [text for _, text, _ in planted.cases(seed=3, per_type=6)] + planted.prose_lines()[:60]
    texts += [
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM",
        "the turn after it",
        "ends with a newline\n",
        "",
        "contact: a.b@example.org",
        "\x00 odd",
    ]
    rng = random.Random(0)
    rng.shuffle(texts)
    for i in range(0, len(texts), 7):
        group = texts[i : i + 7]
        alone = [redact(t, CFG) for t in group]
        together, counts = redact_many(group, CFG)
        assert together == [t for t, _ in alone]
        assert counts == dict(sum((Counter(c) for _, c in alone), Counter()))
