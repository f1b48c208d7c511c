"""The configuration: the deploy example, every validation rule at its exact key
path, sizes and durations, defaults, routes, and the summary ``imapproxy check``
prints."""

from __future__ import annotations

import math
import re
import textwrap
from pathlib import Path

import pytest
import trustme
from cryptography.hazmat.primitives import serialization
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from imapproxy.config import (
    Address,
    Config,
    ConfigError,
    Limits,
    Listener,
    Logging,
    Routes,
    Timeouts,
    format_duration,
    format_size,
    load_config,
    parse_config,
    parse_duration,
    parse_size,
)

DEPLOY_EXAMPLE = Path(__file__).parent.parent / "deploy" / "imapproxy.toml"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def certs(tmp_path: Path, ca: trustme.CA) -> dict[str, Path]:
    """A server certificate, its key and the CA, as PEM files."""
    leaf = ca.issue_cert("imap.example.com")
    files = {"cert": tmp_path / "cert.pem", "key": tmp_path / "key.pem", "ca": tmp_path / "ca.pem"}
    leaf.cert_chain_pems[0].write_to_path(str(files["cert"]))
    leaf.private_key_pem.write_to_path(str(files["key"]))
    ca.cert_pem.write_to_path(str(files["ca"]))
    return files


def deploy_example(directory: Path, ca: trustme.CA) -> Path:
    """deploy/imapproxy.toml with /etc/imapproxy/ moved to ``directory`` and the
    certificate files it names created there."""
    (directory / "tls").mkdir(exist_ok=True)
    leaf = ca.issue_cert("imap.example.com")
    leaf.cert_chain_pems[0].write_to_path(str(directory / "tls" / "imap.example.com.crt"))
    leaf.private_key_pem.write_to_path(str(directory / "tls" / "imap.example.com.key"))
    ca.cert_pem.write_to_path(str(directory / "tls" / "internal-ca.pem"))
    text = DEPLOY_EXAMPLE.read_text().replace("/etc/imapproxy/", f"{directory}/")
    path = directory / "imapproxy.toml"
    path.write_text(text)
    return path


LOOPBACK = """
[[listener]]
address = "127.0.0.1:1143"
tls = "none"

[[upstream]]
name = "main"
address = "127.0.0.1:143"
tls = "none"
"""


def toml(text: str) -> str:
    return textwrap.dedent(text)


def errors_of(text: str, **kwargs: Path) -> list[str]:
    with pytest.raises(ConfigError) as excinfo:
        parse_config(toml(text), **kwargs)
    return excinfo.value.errors


def tls_section(certs: dict[str, Path]) -> str:
    return f'[tls]\ncert = "{certs["cert"]}"\nkey = "{certs["key"]}"\n'


# -- the deploy example and defaults ------------------------------------------------


def test_deploy_example_parses(tmp_path: Path, ca: trustme.CA) -> None:
    config = load_config(deploy_example(tmp_path, ca))
    assert [(str(lis.address), lis.tls, lis.name) for lis in config.listeners] == [
        ("0.0.0.0:993", "implicit", "implicit:993"),
        ("0.0.0.0:143", "starttls", "starttls:143"),
    ]
    assert config.tls is not None
    assert config.tls.cert == tmp_path / "tls" / "imap.example.com.crt"
    (upstream,) = config.upstreams
    assert upstream.name == "mailstore"
    assert upstream.address == Address("mailstore.internal.example.com", 993)
    assert upstream.ca == tmp_path / "tls" / "internal-ca.pem"
    assert upstream.verify is True
    assert upstream.server_name == "mailstore.internal.example.com"
    assert upstream.trusted is True
    assert config.routes.default == "mailstore"
    assert config.routes.domains == {"example.com": "mailstore"}
    assert config.limits.max_literal == 50 * 1024**2
    assert config.limits.login_failure_window == 900.0
    assert config.timeouts.idle == 1860.0
    assert config.source == tmp_path / "imapproxy.toml"


def test_documentation_example_parses(tmp_path: Path, ca: trustme.CA) -> None:
    doc = (DEPLOY_EXAMPLE.parent.parent / "docs" / "configuration.md").read_text()
    example = doc.split("## Example", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    deploy_example(tmp_path, ca)  # the certificate files
    config = parse_config(example.replace("/etc/imapproxy/", f"{tmp_path}/"))
    assert [lis.name for lis in config.listeners] == ["implicit:993", "starttls:143", "monitoring"]
    assert config.upstream("legacy").server_name == "legacy.internal.example.com"
    assert config.routes.lookup("Alice@Example.com") == "legacy"
    assert config.routes.lookup("bob@old.example.org") == "legacy"
    assert config.routes.lookup("bob@example.com") == "mailstore"


def test_deploy_example_uses_etc_imapproxy() -> None:
    text = DEPLOY_EXAMPLE.read_text()
    assert '"/etc/imapproxy/tls/imap.example.com.crt"' in text
    assert '"/etc/imapproxy/tls/internal-ca.pem"' in text


def test_defaults() -> None:
    config = parse_config(LOOPBACK)
    assert config.tls is None
    assert config.limits == Limits(
        max_line=65536,
        max_literal=64 * 1024 * 1024,
        max_preauth_literal=8192,
        max_connections=5000,
        max_connections_per_ip=100,
        max_pipelined=1000,
        login_failure_delay=1.0,
        login_failure_max_delay=30.0,
        login_failure_window=900.0,
    )
    assert config.timeouts == Timeouts(
        preauth=60.0,
        tls_handshake=30.0,
        idle=1860.0,
        upstream_connect=10.0,
        upstream_response=120.0,
        shutdown_grace=10.0,
    )
    assert config.logging == Logging(level="info", format="auto", file=None)
    upstream = config.upstream("main")
    assert (upstream.ca, upstream.verify, upstream.allow_plaintext, upstream.trusted) == (
        None,
        True,
        False,
        False,
    )
    assert upstream.server_name == "127.0.0.1"
    # one upstream and no default: it is the default
    assert config.routes == Routes(default="main", domains={}, users={})
    assert config.source == Path("<string>")
    assert config.listeners[0].name == "none:1143"


def test_config_is_frozen() -> None:
    config = parse_config(LOOPBACK)
    with pytest.raises(ValidationError):
        config.limits = Limits()
    with pytest.raises(ValidationError):
        config.listeners[0].tls = "implicit"


def test_upstream_lookup_by_name() -> None:
    config = parse_config(LOOPBACK)
    assert config.upstream("main").name == "main"
    with pytest.raises(KeyError):
        config.upstream("other")


def test_standalone_models_derive_defaults() -> None:
    listener = Listener.model_validate({"address": "[::1]:993", "tls": "implicit"})
    assert listener.name == "implicit:993"
    assert listener.address == Address("::1", 993)


# -- addresses ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.0.0.0:993", Address("0.0.0.0", 993)),  # noqa: S104
        ("[::]:993", Address("::", 993)),
        ("[::1]:0", Address("::1", 0)),
        ("[fe80::1%eth0]:143", Address("fe80::1%eth0", 143)),
        ("mail.example.com:143", Address("mail.example.com", 143)),
        ("mail_store-1:65535", Address("mail_store-1", 65535)),
        ("localhost:1", Address("localhost", 1)),
    ],
)
def test_address_parses(text: str, expected: Address) -> None:
    assert Address.parse(text) == expected
    assert str(expected) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("foo", "expected host:port (IPv6 as [::1]:993), got 'foo'"),
        (":993", "expected host:port"),
        ("::1:993", "IPv6 addresses need brackets, as in [::1]:993"),
        ("[::1]993", "expected host:port"),
        ("[mail]:993", "'mail' in brackets is not an IPv6 address"),
        ("mail:99999", "port must be a number from 0 to 65535, got '99999'"),
        ("mail:-1", "port must be a number from 0 to 65535"),
        ("mail:", "port must be a number"),
        ("999.1.1.1:1", "'999.1.1.1' is not a valid IPv4 address"),
        ("bad host:1", "'bad host' is not a host name or IPv4 address"),
        ("-x.example:1", "not a host name"),
    ],
)
def test_address_refuses(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        Address.parse(text)


@given(
    host=st.ip_addresses().map(str)
    | st.from_regex(r"[a-z][a-z0-9-]{0,20}[a-z0-9](\.[a-z][a-z0-9]{0,10}){0,3}", fullmatch=True),
    port=st.integers(0, 65535),
)
def test_address_round_trip(host: str, port: int) -> None:
    address = Address(host, port)
    assert Address.parse(str(address)) == address


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("localhost", True),
        ("LOCALHOST.", True),
        ("0.0.0.0", False),  # noqa: S104
        ("::", False),
        ("10.0.0.1", False),
        ("mail.example.com", False),
        ("localhost.example.com", False),
    ],
)
def test_address_is_loopback(host: str, loopback: bool) -> None:
    assert Address(host, 1).is_loopback is loopback


# -- listeners and [tls] -----------------------------------------------------------


def test_plaintext_listener_only_on_loopback() -> None:
    errors = errors_of(LOOPBACK.replace("127.0.0.1:1143", "0.0.0.0:143"))
    assert len(errors) == 1
    assert errors[0].startswith('listener[0].tls: tls = "none" is allowed only on a loopback')
    assert "clients would send passwords in clear text" in errors[0]
    for address in ("[::1]:1143", "localhost:1143"):
        parse_config(LOOPBACK.replace("127.0.0.1:1143", address))


def test_listener_address_error_path() -> None:
    errors = errors_of(LOOPBACK.replace('"127.0.0.1:1143"', '"foo"'))
    assert errors == ["listener[0].address: expected host:port (IPv6 as [::1]:993), got 'foo'"]
    errors = errors_of(LOOPBACK.replace('"127.0.0.1:1143"', "993"))
    assert errors == [
        "listener[0].address: expected host:port (IPv6 as [::1]:993) as a string, got 993"
    ]


def test_listener_tls_mode_error() -> None:
    errors = errors_of(LOOPBACK.replace('tls = "none"\n\n[[up', 'tls = "ssl"\n\n[[up'))
    assert errors == ["listener[0].tls: expected 'implicit', 'starttls' or 'none', got 'ssl'"]


def test_tls_listener_needs_tls_section(certs: dict[str, Path]) -> None:
    text = LOOPBACK.replace('tls = "none"\n\n[[up', 'tls = "starttls"\n\n[[up')
    assert errors_of(text) == [
        "tls: listener[0] use TLS: add a [tls] section with cert and key "
        "(the certificate clients see)"
    ]
    config = parse_config(text + tls_section(certs))
    assert config.tls is not None
    assert config.tls.min_version == "1.2"
    assert config.tls.ciphers is None


def test_listener_names_unique() -> None:
    two = LOOPBACK + '[[listener]]\naddress = "[::1]:1143"\ntls = "none"\n'
    assert [lis.name for lis in parse_config(two).listeners] == [
        "none:127.0.0.1:1143",
        "none:[::1]:1143",
    ]
    named = two.replace('1143"\ntls = "none"\n', '1143"\ntls = "none"\nname = "local"\n')
    assert errors_of(named) == ["listener[1].name: 'local' is the name of listener[0] too"]
    same = LOOPBACK + '[[listener]]\naddress = "127.0.0.1:1143"\ntls = "none"\n'
    assert errors_of(same) == ["listener[1].address: listener[0] has it too"]


def test_listeners_required() -> None:
    text = LOOPBACK.split("[[upstream]]")[1]
    assert errors_of("[[upstream]]" + text) == [
        "listener: at least one [[listener]] table is required"
    ]
    assert errors_of("listener = []\n[[upstream]]" + text) == [
        "listener: at least one [[listener]] table is required"
    ]


def test_tls_files_must_exist(tmp_path: Path, certs: dict[str, Path]) -> None:
    text = LOOPBACK + f'[tls]\ncert = "{tmp_path / "nope.pem"}"\nkey = "{tmp_path}"\n'
    assert errors_of(text) == [
        f"tls.cert: file not found: {tmp_path / 'nope.pem'}",
        f"tls.key: not a file: {tmp_path}",
    ]
    assert errors_of(LOOPBACK + "[tls]\n") == [
        "tls.cert: required key is missing",
        "tls.key: required key is missing",
    ]


def test_tls_files_are_checked_with_openssl(
    tmp_path: Path, certs: dict[str, Path], ca: trustme.CA
) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    swapped = LOOPBACK + f'[tls]\ncert = "{garbage}"\nkey = "{certs["key"]}"\n'
    (error,) = errors_of(swapped)
    assert error.startswith(f"tls.cert: not a PEM certificate: {garbage}")

    other_key = tmp_path / "other.key"
    ca.issue_cert("other.example.com").private_key_pem.write_to_path(str(other_key))
    mismatch = LOOPBACK + f'[tls]\ncert = "{certs["cert"]}"\nkey = "{other_key}"\n'
    (error,) = errors_of(mismatch)
    assert error.startswith(f"tls.key: {other_key} is not the private key of tls.cert")


def test_encrypted_key_is_refused(tmp_path: Path, certs: dict[str, Path]) -> None:
    key = serialization.load_pem_private_key(certs["key"].read_bytes(), password=None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"hunter2"),
        )
    )
    text = LOOPBACK + f'[tls]\ncert = "{certs["cert"]}"\nkey = "{encrypted}"\n'
    assert errors_of(text) == [
        f"tls.key: {encrypted} is encrypted; imapproxy needs an unencrypted key"
    ]


def test_tls_ciphers_and_version(certs: dict[str, Path]) -> None:
    good = LOOPBACK + tls_section(certs) + 'ciphers = "ECDHE+AESGCM"\nmin_version = "1.3"\n'
    config = parse_config(good)
    assert config.tls is not None
    assert (config.tls.ciphers, config.tls.min_version) == ("ECDHE+AESGCM", "1.3")
    assert errors_of(LOOPBACK + tls_section(certs) + 'ciphers = "NO-SUCH-CIPHER"\n') == [
        "tls.ciphers: OpenSSL selects no cipher for 'NO-SUCH-CIPHER'"
    ]
    assert errors_of(LOOPBACK + tls_section(certs) + "min_version = 1.2\n") == [
        "tls.min_version: expected '1.2' or '1.3', got 1.2"
    ]


def test_relative_paths_are_taken_from_the_config_directory(
    tmp_path: Path, certs: dict[str, Path]
) -> None:
    text = LOOPBACK + '[tls]\ncert = "cert.pem"\nkey = "key.pem"\n[logging]\nfile = "x.log"\n'
    path = tmp_path / "imapproxy.toml"
    path.write_text(text)
    config = load_config(path)
    assert config.tls is not None
    assert config.tls.cert == certs["cert"]
    assert config.logging.file == tmp_path / "x.log"


# -- upstreams ---------------------------------------------------------------------


def test_plaintext_upstream_needs_opt_in() -> None:
    remote = LOOPBACK.replace('"127.0.0.1:143"', '"mail.internal:143"')
    (error,) = errors_of(remote)
    assert error.startswith('upstream[0].tls: tls = "none" to mail.internal:143, which is not')
    assert "set allow_plaintext = true" in error
    config = parse_config(remote + "allow_plaintext = true\n")
    assert config.upstreams[0].allow_plaintext is True
    assert "allow_plaintext = yes" in config.summary()


def test_upstream_checks(tmp_path: Path) -> None:
    text = (
        LOOPBACK
        + '[[upstream]]\nname = "main"\naddress = "mail:0"\ntls = "implicit"\n'
        + f'verify = "no"\nca = "{tmp_path / "ca.pem"}"\nserver_name = "mail:993"\n'
        + '[[upstream]]\nname = "with space"\naddress = "mail:993"\ntls = "implicit"\n'
    )
    assert errors_of(text) == [
        "upstream[1].ca: file not found: " + str(tmp_path / "ca.pem"),
        "upstream[1].verify: expected true or false, got 'no'",
        "upstream[1].server_name: expected a host name (no port), "
        "'mail:993' is not a host name or IPv4 address",
        "upstream[2].name: expected a name of letters, digits, '_', '.', ':' and '-', "
        "got 'with space'",
    ]


def test_upstream_port_zero_and_duplicate_names() -> None:
    port0 = LOOPBACK.replace('"127.0.0.1:143"', '"127.0.0.1:0"')
    assert errors_of(port0) == ["upstream[0].address: port 0 is only meaningful for a listener"]
    twice = LOOPBACK + '[[upstream]]\nname = "main"\naddress = "mail:993"\ntls = "implicit"\n'
    assert errors_of(twice) == ["upstream[1].name: 'main' is the name of upstream[0] too"]


def test_upstream_ca_must_hold_certificates(tmp_path: Path, certs: dict[str, Path]) -> None:
    text = LOOPBACK.replace(
        '.1:143"\ntls = "none"\n', f'.1:143"\ntls = "implicit"\nca = "{certs["key"]}"\n'
    )
    (error,) = errors_of(text)
    assert error.startswith(f"upstream[0].ca: no PEM CA certificate in {certs['key']}")
    good = text.replace(str(certs["key"]), str(certs["ca"]))
    upstream = parse_config(good).upstreams[0]
    assert upstream.ca == certs["ca"]
    assert "against CA file" in upstream.tls_description


def test_upstream_server_name_and_verify() -> None:
    text = LOOPBACK + (
        '[[upstream]]\nname = "other"\naddress = "10.1.2.3:993"\ntls = "implicit"\n'
        'server_name = "mail.example.com"\n'
        '[[upstream]]\nname = "lab"\naddress = "[fd00::5]:993"\ntls = "starttls"\nverify = false\n'
        '[routes]\ndefault = "main"\n'
    )
    config = parse_config(text)
    assert config.upstream("other").server_name == "mail.example.com"
    assert config.upstream("lab").server_name == "fd00::5"
    assert config.upstream("lab").tls_description == "starttls, certificate NOT verified"
    assert "certificate verified for 'mail.example.com' against system store" in config.summary()


def test_upstreams_required() -> None:
    assert errors_of(LOOPBACK.split("[[upstream]]")[0]) == [
        "upstream: at least one [[upstream]] table is required"
    ]


# -- routes ------------------------------------------------------------------------

TWO_UPSTREAMS = LOOPBACK + '[[upstream]]\nname = "legacy"\naddress = "[::1]:143"\ntls = "none"\n'


def test_routes_name_existing_upstreams() -> None:
    text = TWO_UPSTREAMS + toml(
        """
        [routes]
        default = "nope"
        [routes.domains]
        "example.com" = "legacy"
        "old.example.com" = "gone"
        [routes.users]
        "alice@example.com" = "missing"
        bob = "main"
        """
    )
    assert errors_of(text) == [
        "routes.default: no upstream named 'nope' (upstreams: main, legacy)",
        "routes.domains.\"old.example.com\": no upstream named 'gone' (upstreams: main, legacy)",
        "routes.users.\"alice@example.com\": no upstream named 'missing' (upstreams: main, legacy)",
    ]


def test_routes_needed_with_several_upstreams() -> None:
    assert errors_of(TWO_UPSTREAMS) == [
        "routes: 2 upstreams and no routes: set routes.default, or add "
        "[routes.users] / [routes.domains] entries"
    ]
    # users only: the others are refused at login, which is a valid choice
    config = parse_config(TWO_UPSTREAMS + '[routes.users]\nalice = "legacy"\n')
    assert config.routes.default is None
    assert "default: none (logins matching no route are refused)" in config.summary()


def test_routes_keys_lower_case() -> None:
    text = TWO_UPSTREAMS + toml(
        """
        [routes]
        default = "main"
        domains = { "Example.COM" = "legacy" }
        users = { "Alice@Example.com" = "main" }
        """
    )
    routes = parse_config(text).routes
    assert routes.domains == {"example.com": "legacy"}
    assert routes.users == {"alice@example.com": "main"}
    clash = TWO_UPSTREAMS + '[routes.users]\n"Bob" = "main"\n"bob" = "legacy"\n'
    assert errors_of(clash) == [
        "routes.users.bob: same user name as 'Bob' (keys are compared lower-case)"
    ]
    at = TWO_UPSTREAMS + '[routes.domains]\n"@example.com" = "main"\n'
    assert errors_of(at) == [
        "routes.domains.\"@example.com\": a domain key is the part after '@' (example.com)"
    ]


@pytest.mark.parametrize(
    ("user", "upstream"),
    [
        ("alice@example.com", "user-route"),
        ("ALICE@Example.COM", "user-route"),
        ("bob@example.com", "domain-route"),
        ("bob@EXAMPLE.com", "domain-route"),
        ("bob@sub.example.com", "default"),
        ("example.com", "default"),
        ("carol", "default"),
        ("dave@a@example.com", "domain-route"),
    ],
)
def test_routes_lookup(user: str, upstream: str) -> None:
    routes = Routes(
        default="default",
        domains={"example.com": "domain-route"},
        users={"alice@example.com": "user-route"},
    )
    assert routes.lookup(user) == upstream


def test_routes_lookup_without_default() -> None:
    assert Routes(users={"alice": "x"}).lookup("bob") is None


# -- limits, sizes, durations ------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "size"),
    [
        (1, 1),
        (65536, 65536),
        ("8192", 8192),
        ("512B", 512),
        ("64KiB", 65536),
        ("64K", 65536),
        ("64kb", 64000),
        ("10MB", 10_000_000),
        ("10MiB", 10 * 1024**2),
        ("1 GiB", 1024**3),
        ("2G", 2 * 1024**3),
        ("1.5KiB", 1536),
        (" 3 MB ", 3_000_000),
    ],
)
def test_parse_size(value: int | str, size: int) -> None:
    assert parse_size(value) == size


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "must be a positive size, got 0"),
        (-1, "must be a positive size"),
        ("0KiB", "must be a positive size"),
        (True, "expected a size"),
        (1.5, "expected a size"),
        ("12 furlongs", "expected a size"),
        ("1TB", "expected a size"),
        ("KiB", "expected a size"),
        ("1.0001KiB", "'1.0001KiB' is not a whole number of bytes"),
    ],
)
def test_parse_size_refuses(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_size(value)


@given(
    number=st.integers(1, 10_000),
    unit=st.sampled_from([("", 1), ("KiB", 1024), ("MB", 10**6), ("g", 1024**3), ("kb", 1000)]),
    space=st.sampled_from(["", " "]),
)
def test_parse_size_units(number: int, unit: tuple[str, int], space: str) -> None:
    assert parse_size(f"{number}{space}{unit[0]}") == number * unit[1]


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (30, 30.0),
        (0.5, 0.5),
        ("30", 30.0),
        ("30s", 30.0),
        ("31m", 1860.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("1h 30m 15s", 5415.0),
        ("500ms", 0.5),
        ("2d", 172800.0),
        ("1.5h", 5400.0),
        ("10S", 10.0),
    ],
)
def test_parse_duration(value: float | str, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "must be a positive duration, got 0"),
        (-5, "must be a positive duration"),
        (math.inf, "must be a positive duration"),
        (math.nan, "must be a positive duration"),
        (False, "expected a duration"),
        ("", "expected a duration"),
        ("1x", "expected a duration"),
        ("h", "expected a duration"),
        ("1h30", "expected a duration"),
        ("0s", "must be a positive duration"),
    ],
)
def test_parse_duration_refuses(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_duration(value)


@given(hours=st.integers(0, 48), minutes=st.integers(0, 59), seconds=st.integers(0, 59))
def test_parse_duration_compound(hours: int, minutes: int, seconds: int) -> None:
    total = hours * 3600 + minutes * 60 + seconds
    text = "".join(f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (seconds, "s")) if n)
    if total:
        assert parse_duration(text) == total
        assert parse_duration(format_duration(total).split()[0]) == total


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (65536, "64 KiB (65536 bytes)"),
        (64 * 1024**2, "64 MiB (67108864 bytes)"),
        (1024**3, "1 GiB (1073741824 bytes)"),
        (10_000_000, "10 MB (10000000 bytes)"),
        (1000, "1 KB (1000 bytes)"),
        (1536, "1536 bytes"),
        (7, "7 bytes"),
    ],
)
def test_format_size(size: int, text: str) -> None:
    assert format_size(size) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (10.0, "10s"),
        (0.5, "0.5s"),
        (60.0, "60s (1m)"),
        (1860.0, "1860s (31m)"),
        (5415.0, "5415s (1h30m15s)"),
        (90000.0, "90000s (1d1h)"),
        (90.5, "90.5s"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_limits_from_toml() -> None:
    text = LOOPBACK + toml(
        """
        [limits]
        max_line = "16KiB"
        max_literal = "1GiB"
        max_preauth_literal = 4096
        login_failure_delay = "500ms"
        login_failure_max_delay = "1m"
        login_failure_window = "1h"
        """
    )
    limits = parse_config(text).limits
    assert (limits.max_line, limits.max_literal, limits.max_preauth_literal) == (
        16384,
        1024**3,
        4096,
    )
    assert (
        limits.login_failure_delay,
        limits.login_failure_max_delay,
        limits.login_failure_window,
    ) == (0.5, 60.0, 3600.0)


def test_limits_errors() -> None:
    text = LOOPBACK + toml(
        """
        [limits]
        max_line = "12 furlongs"
        max_connections = 0
        max_pipelined = "5"
        max_connections_per_ip = true
        login_failure_delay = -1
        """
    )
    errors = errors_of(text)
    assert errors[0].startswith("limits.max_line: expected a size: a number of bytes, or a string")
    assert errors[0].endswith("got '12 furlongs'")
    assert errors[1:] == [
        "limits.max_connections: must be greater than 0, got 0",
        "limits.max_connections_per_ip: expected an integer, got true",
        "limits.max_pipelined: expected an integer, got '5'",
        "limits.login_failure_delay: must be a positive duration, got -1",
    ]


def test_limits_consistency() -> None:
    text = LOOPBACK + toml(
        """
        [limits]
        max_literal = "1MiB"
        max_preauth_literal = "2MiB"
        max_connections = 10
        max_connections_per_ip = 11
        login_failure_delay = "1m"
        login_failure_max_delay = "30s"
        """
    )
    assert errors_of(text) == [
        "limits.max_preauth_literal: must not exceed max_literal (1 MiB (1048576 bytes))",
        "limits.max_connections_per_ip: must not exceed max_connections (10)",
        "limits.login_failure_max_delay: must be at least login_failure_delay (60s (1m))",
    ]


def test_timeouts() -> None:
    text = LOOPBACK + '[timeouts]\npreauth = "2m"\nidle = "1h"\nshutdown_grace = 2.5\n'
    timeouts = parse_config(text).timeouts
    assert (timeouts.preauth, timeouts.idle, timeouts.shutdown_grace) == (120.0, 3600.0, 2.5)
    (error,) = errors_of(LOOPBACK + '[timeouts]\nidle = "59s"\n')
    assert error.startswith("timeouts.idle: must be at least 60s, got 59s; RFC 9051")
    assert "30 minutes" in error
    assert parse_config(LOOPBACK + "[timeouts]\nidle = 60\n").timeouts.idle == 60.0
    assert errors_of(LOOPBACK + '[timeouts]\nupstream_connect = "soon"\n')[0].startswith(
        "timeouts.upstream_connect: expected a duration"
    )


def test_logging_section(tmp_path: Path) -> None:
    log = tmp_path / "imapproxy.log"
    text = LOOPBACK + f'[logging]\nlevel = "debug"\nformat = "json"\nfile = "{log}"\n'
    assert parse_config(text).logging == Logging(level="debug", format="json", file=log)
    missing = tmp_path / "no" / "x.log"
    assert errors_of(LOOPBACK + f'[logging]\nlevel = "trace"\nfile = "{missing}"\n') == [
        "logging.level: expected 'debug', 'info', 'warning' or 'error', got 'trace'",
        f"logging.file: directory not found: {tmp_path / 'no'}",
    ]
    assert errors_of(LOOPBACK + f'[logging]\nfile = "{tmp_path}"\n') == [
        f"logging.file: is a directory, expected a file name: {tmp_path}"
    ]


# -- unknown keys, wrong types, syntax, files ---------------------------------------


def test_unknown_keys_are_refused_with_the_known_ones() -> None:
    text = 'source = "x"\n' + LOOPBACK.replace('tls = "none"\n', 'tls = "none"\nport = 1\n', 1)
    text += toml(
        """
        [cache]
        size = 1
        [logging]
        colour = true
        """
    )
    errors = errors_of(text)
    assert errors == [
        "listener[0].port: unknown key; expected one of: address, tls, name",
        "logging.colour: unknown key; expected one of: level, format, file",
        "cache.size: unknown key; expected one of: memory_bytes, disk_dir, disk_bytes, "
        "redis_url, redis_password_file, redis_timeout, key_file, ttl",
        "source: unknown key; expected one of: "
        "listener, tls, upstream, routes, limits, timeouts, logging, rules, cache, multiplex",
    ]


def test_wrong_table_types() -> None:
    assert errors_of('limits = "big"\n' + LOOPBACK) == ["limits: expected a table, got 'big'"]
    assert errors_of(LOOPBACK.replace("[[listener]]", "[listener]")) == [
        "listener: expected an array of tables, got a table"
    ]
    assert errors_of(LOOPBACK + "[routes]\nusers = { alice = 3 }\n") == [
        "routes.users.alice: expected a string, got 3"
    ]


def test_all_errors_are_reported_with_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        toml(
            """
            [[listener]]
            address = "foo"
            tls = "tls"

            [[upstream]]
            name = "a"
            address = "mail:143"
            tls = "none"
            """
        )
    )
    with pytest.raises(ConfigError) as excinfo:
        load_config(str(path))
    error = excinfo.value
    assert error.path == path
    assert len(error.errors) == 3
    assert str(error).splitlines() == [f"{path}: {line}" for line in error.errors]
    assert (
        error.errors[0] == "listener[0].address: expected host:port (IPv6 as [::1]:993), got 'foo'"
    )


def test_toml_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "syntax.toml"
    path.write_text('[[listener]]\naddress = "127.0.0.1:1"\ntls = none\n')
    with pytest.raises(ConfigError) as excinfo:
        load_config(path)
    assert str(excinfo.value) == f"{path}: line 3, column 7: TOML syntax: Invalid value"
    assert errors_of("a = 1\nb = ") == ["line 2 (end of file): TOML syntax: Invalid value"]
    assert errors_of("[a]\nx = 1\n[a]\n") == [
        "line 3, column 3: TOML syntax: Cannot declare ('a',) twice"
    ]


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_config(tmp_path / "missing.toml")
    assert str(excinfo.value) == (
        f"{tmp_path / 'missing.toml'}: cannot read the file: No such file or directory"
    )
    with pytest.raises(ConfigError) as excinfo:
        load_config(tmp_path)
    assert str(excinfo.value) == f"{tmp_path}: cannot read the file: Is a directory"
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes(b"# caf\xe9\n[[listener]]\n")
    with pytest.raises(ConfigError) as excinfo:
        load_config(latin1)
    assert str(excinfo.value) == f"{latin1}: not UTF-8 text (byte 5)"


def test_parse_config_names_its_source() -> None:
    with pytest.raises(ConfigError) as excinfo:
        parse_config("x = 1\n" + LOOPBACK, source=Path("/etc/imapproxy/test.toml"))
    assert str(excinfo.value).startswith("/etc/imapproxy/test.toml: x: unknown key")
    assert parse_config(LOOPBACK, source=Path("/srv/a.toml")).source == Path("/srv/a.toml")


def test_empty_route_key() -> None:
    assert errors_of(TWO_UPSTREAMS + '[routes.users]\n"" = "main"\n') == [
        'routes.users."": expected a user name, got an empty key'
    ]


def test_models_accept_parsed_values() -> None:
    listener = Listener(address=Address("127.0.0.1", 1143), tls="none")
    assert listener.name == "none:1143"
    assert str(listener.address) == "127.0.0.1:1143"


def test_odd_keys_are_quoted_in_paths() -> None:
    text = TWO_UPSTREAMS + '[routes.users]\n"a b" = "x"\n"é" = "main"\nplain_key-1 = "y"\n'
    errors = errors_of(text)
    assert errors == [
        "routes.users.\"a b\": no upstream named 'x' (upstreams: main, legacy)",
        "routes.users.plain_key-1: no upstream named 'y' (upstreams: main, legacy)",
    ]


# -- summary -----------------------------------------------------------------------


def test_summary_shows_effective_values(tmp_path: Path, ca: trustme.CA) -> None:
    config = load_config(deploy_example(tmp_path, ca))
    summary = config.summary()
    for expected in (
        f"configuration: {tmp_path / 'imapproxy.toml'}",
        "implicit:993: 0.0.0.0:993, tls = implicit",
        "starttls:143: 0.0.0.0:143, tls = starttls",
        f"cert = {tmp_path / 'tls' / 'imap.example.com.crt'}",
        "min_version = 1.2",
        "ciphers = OpenSSL default",
        "mailstore: mailstore.internal.example.com:993",
        "tls = implicit, certificate verified for 'mailstore.internal.example.com' "
        f"against CA file {tmp_path / 'tls' / 'internal-ca.pem'}",
        "trusted = yes (forwards client address in ID)",
        "domain example.com -> mailstore",
        "default -> mailstore",
        "max_line = 64 KiB (65536 bytes)",
        "max_literal = 50 MiB (52428800 bytes)",
        "max_connections_per_ip = 100",
        "login_failure_window = 900s (15m)",
        "idle = 1860s (31m)",
        "shutdown_grace = 10s",
        "level = info",
        "format = auto (console on a terminal, JSON lines otherwise)",
        "file = none (standard output)",
    ):
        assert expected in summary, expected


def test_summary_of_a_minimal_config() -> None:
    summary = parse_config(LOOPBACK).summary()
    assert "none (every listener is plaintext on loopback)" in summary
    assert "tls = none (plaintext)" in summary
    assert "trusted = no (does not forward client address in ID)" in summary
    assert "max_literal = 64 MiB (67108864 bytes)" in summary
    assert "upstream_response = 120s (2m)" in summary
    # every section of the model shows up
    for section in ("listeners:", "tls:", "upstreams:", "routes", "limits:", "timeouts:"):
        assert f"\n{section}" in summary
    assert set(Config.model_fields) == {
        "listeners",
        "tls",
        "upstreams",
        "routes",
        "limits",
        "timeouts",
        "logging",
        "rules",
        "cache",
        "multiplex",
    }


# -- [rules] ---------------------------------------------------------------------------


def test_rules_section_defaults_to_no_rules() -> None:
    rules = parse_config(toml(LOOPBACK)).rules
    assert (rules.dir, rules.users_file, rules.default, rules.user_case) == (
        None,
        None,
        "allow",
        "lower",
    )


def test_rules_dir_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "rules.d").mkdir()
    (tmp_path / "groups.toml").write_text("[groups]\n")
    path = tmp_path / "imapproxy.toml"
    path.write_text(
        toml(LOOPBACK) + '[rules]\ndir = "rules.d"\nusers_file = "groups.toml"\ndefault = "deny"\n'
    )
    rules = load_config(path).rules
    assert rules.dir == tmp_path / "rules.d"
    assert rules.users_file == tmp_path / "groups.toml"
    assert rules.default == "deny"
    assert "default = deny" in load_config(path).summary()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('dir = "/nonexistent/rules"', "rules.dir: directory not found: /nonexistent/rules"),
        ('dir = "/etc/hostname"', "rules.dir: not a directory: /etc/hostname"),
        ('default = "maybe"', "rules.default: "),
        ('user_case = "upper"', "rules.user_case: "),
        ("colour = 1", "rules.colour: "),
    ],
)
def test_rules_section_errors(value: str, message: str) -> None:
    (error,) = errors_of(LOOPBACK + "[rules]\n" + value + "\n")
    assert message in error
