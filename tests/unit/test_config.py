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
        ("[runtime.handlers]\nrunc = 'x'\n", "default handler"),
        ("[runtime.handlers]\n'Bad_Name' = 'x'\n", "not a valid handler name"),
        ("[runtime.handlers]\nkata = ''\n", "must be the runtime's binary"),
        ("[runtime]\nhandlers = 3\n", "must be a table"),
    ],
)
def test_bad_config_is_a_clear_error(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(text)


def test_runtime_handlers_default_to_crun_and_replace_as_a_whole() -> None:
    assert Config().runtime.handlers == (("crun", "crun"),)
    cfg = parse_config('[runtime.handlers]\nrunc-b = "/usr/sbin/runc"\ncrun = "crun"\n')
    assert cfg.runtime.handlers == (("crun", "crun"), ("runc-b", "/usr/sbin/runc"))
    assert parse_config("[runtime.handlers]\n").runtime.handlers == ()
