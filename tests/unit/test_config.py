"""The configuration schema: parsing, precedence, consistency checks, masking and its docs."""

from __future__ import annotations

import re

import attrs
import pytest

from harness.processes import ROOT
from tallow.config import SETTINGS, ConfigError, Settings, describe, load


def test_defaults_need_no_environment() -> None:
    settings = load({})
    assert (settings.host, settings.port, settings.role) == ("0.0.0.0", 3000, "all")
    assert settings.redis_url is None and settings.allowed_origins == ()
    assert settings.serves_http and settings.serves_signaling


def test_overrides_beat_environment_which_beats_defaults() -> None:
    assert load({"TALLOW_PORT": "4000"}).port == 4000
    assert load({"TALLOW_PORT": "4000"}, {"port": "5000"}).port == 5000


def test_lists_and_networks_parse() -> None:
    settings = load(
        {
            "ALLOWED_ORIGINS": "https://A.example/, https://b.example",
            "TALLOW_TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1, ::1",
        }
    )
    assert settings.allowed_origins == ("https://a.example", "https://b.example")
    assert [str(net) for net in settings.trusted_proxies] == [
        "10.0.0.0/8",
        "127.0.0.1/32",
        "::1/128",
    ]


def test_error_names_the_flag_when_the_flag_was_wrong() -> None:
    with pytest.raises(ConfigError, match=r"^--port / TALLOW_PORT: "):
        load({}, {"port": "x"})


def test_secret_values_never_appear_in_errors() -> None:
    with pytest.raises(ConfigError) as error:
        load({"REDIS_URL": "mysql://user:pw-123@db"})
    assert "pw-123" not in str(error.value) and "(hidden)" in str(error.value)


def test_turn_urls_need_credentials() -> None:
    with pytest.raises(ConfigError, match="TURN_URLS"):
        load({"TURN_URLS": "turn:t.example"})
    with pytest.raises(ConfigError, match="together"):
        load({"TURN_USERNAME": "u"})
    assert load({"TURN_URLS": "turn:t.example", "TURN_SECRET": "s"}).turn_secret == "s"


def test_masking() -> None:
    shown = describe(load({"METRICS_TOKEN": "t0ken", "TURN_SECRET": "sec"}))
    assert shown["METRICS_TOKEN"] == "***" and shown["TURN_SECRET"] == "***"
    assert shown["TURN_CREDENTIAL"] is None and shown["REDIS_URL"] is None
    sentinel = "redis+sentinel://:pw@h1:26379,h2:26379/mymaster"
    assert describe(load({"REDIS_URL": sentinel}))["REDIS_URL"] == (
        "redis+sentinel://:***@h1:26379,h2:26379/mymaster/0"
    )
    cluster = "rediss+cluster://app:pw@n1:7000,n2:7001?ssl_ca_certs=/ca.pem"
    assert describe(load({"REDIS_URL": cluster}))["REDIS_URL"] == (
        "rediss+cluster://app:***@n1:7000,n2:7001?ssl_ca_certs=/ca.pem"
    )


def test_a_sentinel_url_without_a_service_is_a_configuration_error() -> None:
    with pytest.raises(
        ConfigError, match=r"^REDIS_URL: a redis\+sentinel:// URL names the service"
    ):
        load({"REDIS_URL": "redis+sentinel://:pw@h1:26379,h2:26379"})


def test_each_setting_is_declared_once_as_a_field() -> None:
    assert [setting.name for setting in SETTINGS] == [f.name for f in attrs.fields(Settings)]
    assert len({setting.env for setting in SETTINGS}) == len(SETTINGS)


def test_every_setting_is_documented_with_its_default() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text()
    for setting in SETTINGS:
        default = f"`{setting.default}`" if setting.default else "unset"
        row = re.compile(
            rf"^\| `{setting.env}` \| `{setting.flag}` \| {re.escape(default)} \|", re.MULTILINE
        )
        assert row.search(doc), setting.env
