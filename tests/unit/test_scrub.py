"""Scrubbing: one table of input -> expected, mappings, the logging filter, and properties (idempotent,
ordinary text untouched)."""

from __future__ import annotations

import base64
import logging
import re
import time

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from shared_core.security.scrub import ScrubFilter, is_sensitive_name, scrub, scrub_engine_error, scrub_mapping

# Fake credentials, assembled from parts so that no secret scanner mistakes this file for a leak.
JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9" + ".eyJzdWIiOiJhbGljZSIsInJvbGUiOiJhZG1pbiJ9" + ".c2lnbmF0dXJlLW5vdC1yZWFs_x-Y"
GHP = "ghp" + "_" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3z5A"
GITHUB_PAT = "github" + "_pat_" + "11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRS"
DAPI = "dapi" + "0123456789abcdef0123456789abcdef"
AWS_ID = "AKIA" + "IOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCY" + "EXAMPLEKEY"
AZURE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
FERNET = "gAAAAA" + "BmZ0cX1q2w3e4r5t6y7u8i9o0pAsDfGhJkLzXcVbNm-_QwErTyUiOpAsDfGhJkLzXcVbNmQwErTyUiOpAsDfGhJk=="
STRIPE = "sk_" + "live_" + "51HbXq2eZvKYlo2C0123456789ab"
WHSEC = "whsec" + "_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
HEX64 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
PLAN_ID = "a80a71a0bccb97f80d67611d535463fbf9240a81e588e40052563f0d9d32360c"
SHA = "1f0e3dad99908345f7439f8ffabdffc4a5d1b2c3"
FERNET_KEY = "q3Zr0bK8yM4Vd1pX7nT2" + "wLcH9sJfE6uA5gQiOoRjY0k="
SLACK = "xoxb" + "-1234567890-0987654321-AbCdEfGhIjKlMnOpQrStUvWx"
GOOGLE = "AIza" + "SyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY"
DAPI_UPPER = "dapi" + "0123456789ABCDEF0123456789ABCDEF"
PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA1234\nabcd==\n-----END RSA PRIVATE KEY-----"

CASES: list[tuple[str, str, str]] = [
    # (name, input, expected)
    ("email", "contact alice.smith+ci@example.co.uk now", "contact [email] now"),
    ("emails in a list", "to: a@b.io, Bob.Jones@Example.COM;", "to: [email], [email];"),
    ("adjacent emails", "a@b.io.@c.io z@y.io+x@w.io", "[email][email] [email][email]"),
    ("email before an underscore is not cut", "x@a.b_c", "x@a.b_c"),
    ("git remote is not an email", "git@github.com:acme/models.git", "git@github.com:acme/models.git"),
    ("host without a domain", "postgresql://app@localhost/ironlayer", "postgresql://app@localhost/ironlayer"),
    ("bearer header", f"Authorization: Bearer {JWT}", "Authorization: Bearer [token]"),
    ("bearer opaque token", "curl -H 'authorization: bearer 0a1b2c3d4e5f6a7b8c9d'", "curl -H 'authorization: bearer [token]'"),
    ("basic header", "Authorization: Basic YWxpY2U6aHVudGVyMg==", "Authorization: Basic [token]"),
    ("bare jwt", f"token was {JWT}.", "token was [jwt]."),
    ("jwt in a query string", f"GET /api/plans/{PLAN_ID}/approval?token={JWT}&x=1",
     f"GET /api/plans/{PLAN_ID}/approval?token=***&x=1"),
    ("github classic token", f"using {GHP} for acme", "using [github-token] for acme"),
    ("github other prefixes", f"{GHP.replace('ghp', 'gho')} {GHP.replace('ghp', 'ghu')} {GHP.replace('ghp', 'ghs')} "
     f"{GHP.replace('ghp', 'ghr')}", "[github-token] [github-token] [github-token] [github-token]"),
    ("github fine-grained token", f"pat={GITHUB_PAT}", "pat=[github-token]"),
    ("github token scheme", f"Authorization: token {GHP}", "Authorization: token [github-token]"),
    ("github token in a clone url", f"https://x-access-token:{GHP}@github.com/acme/repo.git",
     "https://x-access-token:***@github.com/acme/repo.git"),
    ("databricks token", f"host=adb-1.azuredatabricks.net using {DAPI}-2 ok", "host=adb-1.azuredatabricks.net using [databricks-token] ok"),
    ("aws access key id", f"aws key id {AWS_ID} in use", "aws key id [aws-key] in use"),
    ("aws secret access key", f"aws_secret_access_key={AWS_SECRET}", "aws_secret_access_key=***"),
    ("aws secret in yaml", f"AWS_SECRET_ACCESS_KEY: {AWS_SECRET}", "AWS_SECRET_ACCESS_KEY: ***"),
    ("azure storage connection string",
     f"DefaultEndpointsProtocol=https;AccountName=devstoreaccount1;AccountKey={AZURE_KEY};BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;",
     "DefaultEndpointsProtocol=https;AccountName=devstoreaccount1;AccountKey=***;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"),
    ("service bus key", "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=root;SharedAccessKey=abc+def/ghi=",
     "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=root;SharedAccessKey=***"),
    ("sas url", "https://acct.blob.core.windows.net/c/b.json?sv=2022-11-02&se=2024-01-01&sig=AbC%2BdEf%3D",
     "https://acct.blob.core.windows.net/c/b.json?sv=2022-11-02&se=2024-01-01&sig=***"),
    ("postgres url password", "connecting to postgresql://ironlayer:s3cr3t!pw@db.internal:5432/prod",
     "connecting to postgresql://ironlayer:***@db.internal:5432/prod"),
    ("url password with slash and colon", "redis://:a/b:c@cache:6379", "redis://:***@cache:6379"),
    ("url without password", "https://github.com/acme/models", "https://github.com/acme/models"),
    ("password pair", "password=hunter2 user=bob", "password=*** user=bob"),
    ("odbc pwd", "Server=tcp:db;Uid=app;Pwd=Sup3r$ecret;Encrypt=yes", "Server=tcp:db;Uid=app;Pwd=***;Encrypt=yes"),
    ("quoted secret", "client_secret='quoted value' next", "client_secret='***' next"),
    ("double-quoted password", 'PASSWORD="a b c" done', 'PASSWORD="***" done'),
    ("env style", "IRONLAYER_APPROVAL_SECRET=abcdefghijklmnopqrstuvwxyz012345", "IRONLAYER_APPROVAL_SECRET=***"),
    ("token pair", "access_token=abc.def&refresh_token=ghi", "access_token=***&refresh_token=***"),
    ("api key pair", "api_key = 12345 and apiKey=xyz", "api_key = *** and apiKey=***"),
    ("json secrets", '{"password": "hu\\"nter", "user": "bob", "webhook_secret":"x"}',
     '{"password": "***", "user": "bob", "webhook_secret":"***"}'),
    ("python repr secrets", "{'client_secret': 'abc', 'n': 1, 'Token': 'xyz'}", "{'client_secret': '***', 'n': 1, 'Token': '***'}"),
    ("password in yaml", "password: hunter2\nuser: bob", "password: ***\nuser: bob"),
    ("fernet token", f"stored {FERNET} in db", "stored [fernet-token] in db"),
    ("stripe keys", f"{STRIPE} and {WHSEC}", "[stripe-key] and [stripe-key]"),
    ("hex after key", f"signing key {HEX64}", "signing key [secret]"),
    ("hex after secret", f"the webhook_secret {HEX64[:40]} was rotated", "the webhook_secret [secret] was rotated"),
    ("hex after token with colon", f"Token: {HEX64}", "Token: ***"),
    ("hex after hmac", f"hmac {HEX64[:32]}", "hmac [secret]"),
    ("private key pem", f"key follows\n{PEM}\nend", "key follows\n[private-key]\nend"),
    ("fernet key alone", f"rotated to {FERNET_KEY} today", "rotated to [fernet-key] today"),
    ("credential keys list", f"IRONLAYER_CREDENTIAL_KEYS={FERNET_KEY},{FERNET_KEY.lower()} next",
     "IRONLAYER_CREDENTIAL_KEYS=*** next"),
    ("keys list with a colon", "fernet_keys: abc,def,ghi", "fernet_keys: ***"),
    ("secret inside a key name", "API_SECRET_V2=abc123 SECRET_KEY_BASE=xyz", "API_SECRET_V2=*** SECRET_KEY_BASE=***"),
    ("token with a colon", "token: abc123xyz, user: bob", "token: ***, user: bob"),
    ("credentials with a colon", "credentials: abc123", "credentials: ***"),
    ("aws secret alone", f"export {AWS_SECRET} now", "export [aws-secret] now"),
    ("slack token", f"slack {SLACK} posted", "slack [slack-token] posted"),
    ("slack webhook", "https://hooks.slack.com/services/T0123ABCD/B0456EFGH/abcdefghijklmnopqrstuvwx",
     "https://hooks.slack.com/services/[slack-token]"),
    ("google api key", f"maps key {GOOGLE}.", "maps key [google-key]."),
    ("upper-case databricks token", f"using {DAPI_UPPER}", "using [databricks-token]"),
    ("url password with @", "postgresql://app:p@ss:w@rd@db.internal:5432/prod?sslmode=require",
     "postgresql://app:***@db.internal:5432/prod?sslmode=require"),
    ("url password with @ and an e-mail later", "https://u:a@b@host/x?to=c@d.io", "https://u:***@host/x?to=[email]"),
    ("truncated pem", "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg", "[private-key]"),
    # Ordinary text that must survive.
    ("plan id", f"plan {PLAN_ID} awaits approval", f"plan {PLAN_ID} awaits approval"),
    ("plan id as a pair", f"plan_id={PLAN_ID} step_id={HEX64}", f"plan_id={PLAN_ID} step_id={HEX64}"),
    ("commit sha", f"push {SHA} on main by octocat", f"push {SHA} on main by octocat"),
    ("commit range", f"{SHA[:12]}..{SHA}", f"{SHA[:12]}..{SHA}"),
    ("words about tokens", "the token expired; ask for a new token or secret", "the token expired; ask for a new token or secret"),
    ("model header", "-- unique_key: id\n-- max_tokens=100, partition_by=ds", "-- unique_key: id\n-- max_tokens=100, partition_by=ds"),
    ("keywords inside words", f"monkey {HEX64} keyboard {SHA}", f"monkey {HEX64} keyboard {SHA}"),
    ("basic prose", "Basic authentication is off; the bearer of bad news", "Basic authentication is off; the bearer of bad news"),
    ("model names and ranges", "analytics.orders_daily [2024-01-01, 2024-01-02) 3 rows",
     "analytics.orders_daily [2024-01-01, 2024-01-02) 3 rows"),
    ("dotted names are not jwts", "catalog.schema.table a.b.c", "catalog.schema.table a.b.c"),
    ("numbers", "took 12.5 s, 1,024 rows, exit 0", "took 12.5 s, 1,024 rows, exit 0"),
    ("empty", "", ""),
]


@pytest.mark.parametrize(("text", "expected"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_scrub_table(text: str, expected: str) -> None:
    assert scrub(text) == expected
    assert scrub(expected) == expected  # idempotent on every case


SHAPED = [JWT, GHP, GITHUB_PAT, DAPI, DAPI_UPPER, AWS_ID, AWS_SECRET, FERNET, FERNET_KEY, STRIPE, WHSEC, SLACK,
          GOOGLE]  # recognisable on their own
UNSHAPED = [AZURE_KEY, "hunter2", "correct horse battery staple"]  # recognisable by their key only


def _assert_gone(secret: str, template: str) -> None:
    scrubbed = scrub(template.format(secret))
    assert secret not in scrubbed, (template, scrubbed)
    assert secret[4:24] not in scrubbed, (template, scrubbed)


@pytest.mark.parametrize("secret", SHAPED)
def test_shaped_secrets_go_wherever_they_stand(secret: str) -> None:
    for template in ("{}", "x {} y", "({})", "'{}'", "value={}", "Bearer {}", "key: {}", '{{"v": "{}"}}', "\n{}\n",
                     "https://example.com/?q={}", "{}.", "<{}>"):
        _assert_gone(secret, template)


@pytest.mark.parametrize("secret", SHAPED + UNSHAPED)
def test_any_secret_goes_after_a_secret_key(secret: str) -> None:
    for template in ("password={}", "Password = '{}'", "AccountKey={};", 'client_secret="{}"', "x?sig={}&y=1",
                     '{{"db_password": "{}"}}', "{{'Token': '{}'}}", "aws_secret_access_key: {}", "PWD: {}",
                     "DATABRICKS_TOKEN={}", "postgresql://app:{}@db:5432/x", "token: {}", "MY_API_SECRET_2={}",
                     "IRONLAYER_CREDENTIAL_KEYS={}", "credential_keys: {}"):
        if " " in secret and "'" not in template and '"' not in template:
            continue  # an unquoted value ends at a space
        _assert_gone(secret, template)


def test_scrub_mapping_masks_secret_keys_and_scrubs_every_string() -> None:
    data = {
        "author": "alice@example.com",
        "password": "hunter2",
        "DB-Password": 1234,
        "settings": {"api_key": "abc", "unique_key": "id", "nested": [{"token": None}, {"Secret": ""}]},
        "credentials": {"user": "bob", "pw": "x"},
        "steps": ("plan " + PLAN_ID, "dsn postgresql://u:p@h/db", 3, None, True),
        "bob@example.com": "a key that is personal data",
        "carol@example.com": "another",
        "count": 7,
    }
    assert scrub_mapping(data) == {
        "author": "[email]",
        "password": "***",
        "DB-Password": "***",
        "settings": {"api_key": "***", "unique_key": "id", "nested": [{"token": None}, {"Secret": ""}]},
        "credentials": "***",
        "steps": ("plan " + PLAN_ID, "dsn postgresql://u:***@h/db", 3, None, True),
        "[email]": "a key that is personal data",
        "[email] (7)": "another",
        "count": 7,
    }
    assert data["password"] == "hunter2"  # the input is not modified


@pytest.mark.parametrize(
    ("name", "sensitive"),
    [
        ("password", True), ("db_password", True), ("PWD", True), ("client-secret", True), ("GitHub Token", True),
        ("access_token", True), ("Authorization", True), ("cookie", True), ("api_key", True), ("apiKey", True),
        ("AccountKey", True), ("private_key", True), ("key", True), ("sig", True), ("fernet_keys", True),
        ("credentials", True), ("signature", True),
        ("unique_key", False), ("partition_key", False), ("plan_id", False), ("author", False), ("monkey", False),
        ("design", False), ("sha", False), ("keys_total", False),
    ],
)
def test_sensitive_names(name: str, sensitive: bool) -> None:
    assert is_sensitive_name(name) is sensitive


def test_scrub_mapping_passes_scalars_through() -> None:
    assert scrub_mapping("mail bob@example.com") == "mail [email]"
    assert scrub_mapping(42) == 42
    assert scrub_mapping(None) is None
    assert scrub_mapping([]) == []


def _record(msg: object, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord("ironlayer.test", logging.INFO, __file__, 1, msg, args or None, exc_info)


def test_scrub_filter_scrubs_message_and_arguments() -> None:
    record = _record("plan %s approved by %s with %s (%d rows)", PLAN_ID[:12], "alice@example.com", GHP, 5)
    assert ScrubFilter().filter(record) is True
    assert record.getMessage() == f"plan {PLAN_ID[:12]} approved by [email] with [github-token] (5 rows)"
    assert record.args == ()


def test_scrub_filter_scrubs_dict_args_objects_and_exceptions() -> None:
    class Conn:
        def __str__(self) -> str:
            return "postgresql://app:hunter2@db/prod"

    record = _record("%(who)s via %(conn)s", {"who": "bob@example.com", "conn": Conn()})
    ScrubFilter().filter(record)
    assert record.getMessage() == "[email] via postgresql://app:***@db/prod"

    try:
        raise RuntimeError(f"login failed for carol@example.com with password={AWS_SECRET}")
    except RuntimeError as exc:
        record = _record("request failed", exc=exc)
    ScrubFilter().filter(record)
    assert record.exc_text is not None
    assert "[email]" in record.exc_text and "password=***" in record.exc_text
    assert "carol" not in record.exc_text and AWS_SECRET not in record.exc_text


def test_scrub_filter_never_raises_on_a_bad_format() -> None:
    record = _record("%d rows for %s", "not-a-number", "dave@example.com")
    assert ScrubFilter().filter(record) is True
    assert "dave" not in record.getMessage() and "[email]" in record.getMessage()


def test_scrub_filter_through_a_real_logger(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("ironlayer.test.scrub")
    scrub_filter = ScrubFilter()
    logger.addFilter(scrub_filter)
    try:
        with caplog.at_level(logging.INFO, logger="ironlayer.test.scrub"):
            logger.info("token=%s for %s", JWT, "erin@example.com")
            logger.info("%s", "twice scrubbed stays the same: password=***")
    finally:
        logger.removeFilter(scrub_filter)
    assert caplog.messages == ["token=*** for [email]", "twice scrubbed stays the same: password=***"]


# -------------------------------------------------------------------------------------------- properties

# Ordinary lower-case words, minus any that contain a secret-ish keyword or a credential prefix.
_FORBIDDEN = re.compile(
    r"pass|pwd|secret|token|key|sig|auth|bearer|basic|credential|hmac|salt|cookie|dapi|dose|gh|akia|whsec|eyj|"
    r"gaaaaa|sk|rk|git"
)
WORDS = st.from_regex(r"[a-z][a-z_]{0,11}", fullmatch=True).filter(lambda word: not _FORBIDDEN.search(word))
MODEL_NAMES = st.sampled_from(["analytics.orders_daily", "staging.raw_events", "orders", "dim.customers", "plan", "run"])
HEX = st.integers(min_value=0, max_value=2**256 - 1)
SHAS = HEX.map(lambda n: f"{n:064x}"[:40])
PLAN_IDS = HEX.map(lambda n: f"{n:064x}")
NUMBERS = st.one_of(st.integers(-(10**9), 10**9).map(str), st.floats(0, 1e6, allow_nan=False).map(lambda f: f"{f:.2f}"))
DATES = st.dates().map(lambda d: d.isoformat())
SEPARATORS = st.sampled_from([" ", ", ", "; ", ": ", ":", "=", "/", ".", "-", "(", ")", "[", "]", "\n", " -> ", "'", '"'])
ORDINARY = st.one_of(WORDS, MODEL_NAMES, SHAS, PLAN_IDS, NUMBERS, DATES)


def _join(parts: list[tuple[str, str]]) -> str:
    return "".join(part + sep for part, sep in parts)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(ORDINARY, SEPARATORS), max_size=30))
def test_ordinary_text_is_unchanged(parts: list[tuple[str, str]]) -> None:
    text = _join(parts)
    assert scrub(text) == text


SECRETISH = st.sampled_from([
    JWT, GHP, DAPI, AWS_ID, AWS_SECRET, AZURE_KEY, FERNET, STRIPE, HEX64, "alice@example.com", "git@github.com",
    "password", "pwd", "secret", "token", "key", "AccountKey", "sig", "Bearer", "Basic", "api_key", "@", "://", ":",
    "=", "'", '"', "***", "[email]", "[token]", "[secret]", "postgresql://u:p@h/db", "\"password\": \"x\"",
    "-----BEGIN PRIVATE KEY-----", "-----END PRIVATE KEY-----", "gAAAAA", "eyJ", ".", "_", "-", "&", ";",
])


@settings(max_examples=600, deadline=None)
@given(st.lists(st.tuples(st.one_of(ORDINARY, SECRETISH, SECRETISH), st.sampled_from(["", " ", "=", ":", "@", "."])),
                max_size=25))
def test_scrubbing_is_idempotent(parts: list[tuple[str, str]]) -> None:
    once = scrub(_join(parts))
    assert scrub(once) == once


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_scrubbing_arbitrary_text_is_idempotent(text: str) -> None:
    once = scrub(text)
    assert scrub(once) == once


@pytest.mark.parametrize("unit", ["a.", "a-", "x.password.", "a@", "eyJa.", "http://a:", "key 0", "Bearer ", '"password": "a',
                                  "x.secret.", "a_keys", "http://u:a@", "Ab1/", "Ab1-", "secret_x: ", "xoxb-"])
def test_scrubbing_stays_linear_on_long_adversarial_input(unit: str) -> None:
    # Each rule anchors where a run of key characters starts; a backtracking pattern would take minutes here.
    text = unit * (100_000 // len(unit))
    started = time.perf_counter()
    scrub(text)
    assert time.perf_counter() - started < 5


# ------------------------------------------------------------------------- key shapes, as properties

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
TEXT_AROUND = st.lists(st.tuples(ORDINARY, SEPARATORS), max_size=6).map(_join)


def _mixed(text: str) -> bool:
    """Random keys have upper and lower case letters and a digit; the shapes rely on it (ordinary words don't)."""
    return any(c.isupper() for c in text) and any(c.islower() for c in text) and any(c.isdigit() for c in text)


fernet_keys = st.binary(min_size=32, max_size=32).map(lambda b: base64.urlsafe_b64encode(b).decode())
aws_secrets = st.text(alphabet=B64 + "/+", min_size=40, max_size=40)
slack_tokens = st.tuples(st.sampled_from("abposr"), st.text(alphabet=B64 + "-", min_size=10, max_size=60)).map(
    lambda p: f"xox{p[0]}-{p[1]}")
google_keys = st.text(alphabet=B64 + "_-", min_size=35, max_size=35).map(lambda k: "AIza" + k)
databricks_tokens = st.tuples(st.text(alphabet="0123456789abcdefABCDEF", min_size=32, max_size=40),
                              st.sampled_from(["dapi", "DAPI", "dose"])).map(lambda p: p[1] + p[0])
SHAPES = {"fernet key": fernet_keys, "aws secret": aws_secrets, "slack": slack_tokens, "google": google_keys,
          "databricks": databricks_tokens}


@pytest.mark.parametrize("shape", sorted(SHAPES))
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_key_shapes_are_scrubbed_anywhere_in_ordinary_text(shape: str, data: st.DataObject) -> None:
    secret = data.draw(SHAPES[shape])
    if shape in ("fernet key", "aws secret"):
        assume(_mixed(secret))
    before, after = data.draw(TEXT_AROUND), data.draw(TEXT_AROUND)
    sep = data.draw(st.sampled_from([" ", "\n", " (", ": ", "='"]))
    text = f"{before}{sep}{secret}{sep[::-1] if sep.strip() else sep}{after}"
    once = scrub(text)
    assert secret not in once
    assert scrub(once) == once


secret_values = st.text(alphabet=B64 + "!$%^*()-_+.~@:", min_size=1, max_size=40).filter(lambda v: v.strip(":"))
key_names = st.sampled_from(["IRONLAYER_CREDENTIAL_KEYS", "fernet_keys", "API_SECRET", "my_secret_value",
                             "SECRET_KEY_BASE", "token", "access-token", "db_password", "client_secret"])


@settings(max_examples=300, deadline=None)
@given(key_names, st.lists(secret_values, min_size=1, max_size=3), st.sampled_from(["=", ": ", " = ", ":"]),
       TEXT_AROUND)
def test_secret_assignments_and_key_lists_lose_their_whole_value(
    key: str, values: list[str], sign: str, before: str,
) -> None:
    value = ",".join(values) if key.lower().endswith("keys") else values[0]
    text = f"{before} {key}{sign}{value} end"
    once = scrub(text)
    for part in value.split(","):
        if len(part) >= 3:
            assert part not in once.split(key, 1)[1], (text, once)
    assert once.endswith(" end")
    assert scrub(once) == once


passwords = st.text(alphabet=B64 + "!$%&*()_+=-.~@:", min_size=1, max_size=30)


@settings(max_examples=300, deadline=None)
@given(passwords, st.sampled_from(["postgresql", "https", "redis", "mysql"]),
       st.sampled_from(["db.internal:5432/prod", "host/x?y=1", "cache", "h#frag"]))
def test_url_passwords_go_even_when_they_contain_at_signs(password: str, scheme: str, rest: str) -> None:
    text = f"dsn {scheme}://app:{password}@{rest} ok"
    once = scrub(text)
    assert once == f"dsn {scheme}://app:***@{rest} ok"


@pytest.mark.parametrize(
    ("message", "kind", "sql", "expected"),
    [
        ("Conversion Error: Could not convert string 'alice@x.io' to INT32 when casting from source column email"
         "\n\nLINE 1: SELECT CAST(email AS INT) FROM t\n               ^^^^^^^^^^^^^^^^^^", "ConversionException",
         "SELECT CAST(email AS INT) FROM t", "Conversion Error at line 1, column 8 (the message may quote data and is "
         "withheld)"),
        ('Constraint Error: Duplicate key "id: 5" violates primary key constraint.', "ConstraintException", "",
         "Constraint Error (the message may quote data and is withheld)"),
        ("Out of Range Error: Overflow in multiplication of INT32 (2147483647 * 2)!", "OutOfRangeException", "",
         "Out of Range Error (the message may quote data and is withheld)"),
        ("Invalid Input Error: alice@x.io", "InvalidInputException", "", "Invalid Input Error (the message may "
         "quote data and is withheld)"),
        ('Binder Error: Referenced column "no_col" not found in FROM clause!\nCandidate bindings: "email"\n\n'
         "LINE 1: SELECT no_col FROM t\n               ^^^^^^", "BinderException", "SELECT no_col FROM t",
         'Binder Error at line 1, column 8: Referenced column "no_col" not found in FROM clause!'),
        ('Catalog Error: Table with name nope does not exist!\nDid you mean "other_tenant.secrets"?\n\nLINE 1: '
         "SELECT * FROM nope\n                      ^^^^", "CatalogException", "SELECT * FROM nope",
         "Catalog Error at line 1, column 15: Table with name nope does not exist!"),
        ('Binder Error: Values list "t" does not have a column named "secret_col"', "BinderException",
         "SELECT t.x FROM t", 'Binder Error: Values list "t" does not have a column named "?"'),
        ('Parser Error: syntax error at or near "WHERE"', "ParserException", "SELECT * FROM t WHERE",
         'Parser Error: syntax error at or near "WHERE"'),
        ("something broke with password=hunter2", "IOException", "", "IO Error (the message may quote data and is "
         "withheld)"),
    ],
)
def test_engine_errors_keep_class_and_position_only(message: str, kind: str, sql: str, expected: str) -> None:
    assert scrub_engine_error(message, kind=kind, sql=sql) == expected
