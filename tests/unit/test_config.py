from __future__ import annotations

import pytest

from cri_shim.config import Config, ConfigError, parse_config


def test_empty_config_is_all_defaults() -> None:
    assert parse_config("") == Config()


def test_keys_override_defaults() -> None:
    cfg = parse_config('[cri]\nroot = "/x"\n[images]\nmax_concurrent_downloads = 5\n')
    assert cfg.cri.root == "/x"
    assert cfg.cri.socket == Config().cri.socket
    assert cfg.images.max_concurrent_downloads == 5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[nope]\n", "unknown section"),
        ("[cri]\nsockett = 'x'\n", "unknown key cri.sockett"),
        ("[cri]\nroot = 3\n", "cri.root must be of type str"),
        ("[images]\nmax_concurrent_downloads = true\n", "must be of type int"),
        ("[images]\nmax_concurrent_downloads = 0\n", "at least 1"),
        ("[log]\nformat = 'xml'\n", "log.format"),
        ("[cri\n", "not valid TOML"),
    ],
)
def test_bad_config_is_a_clear_error(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(text)
