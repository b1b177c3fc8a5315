"""The [streaming] section of the daemon's config."""

from __future__ import annotations

import pytest

from cri_shim.config import ConfigError, parse_config


def test_defaults_are_an_ephemeral_loopback_port() -> None:
    cfg = parse_config("")
    assert cfg.streaming.address == "127.0.0.1"
    assert cfg.streaming.port == 0


def test_keys() -> None:
    cfg = parse_config('[streaming]\naddress = "::1"\nport = 10010\n')
    assert (cfg.streaming.address, cfg.streaming.port) == ("::1", 10010)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[streaming]\naddress = "0.0.0.0"\n', "loopback"),
        ('[streaming]\naddress = "10.0.0.1"\n', "loopback"),
        ('[streaming]\naddress = "localhost"\n', "loopback"),
        ("[streaming]\nport = 70000\n", "between 0 and 65535"),
        ('[streaming]\nport = "1"\n', "must be of type int"),
    ],
)
def test_bad_values(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(text)
