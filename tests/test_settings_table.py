"""The README's configuration table is the code's: every setting (environment variable and flag)
has exactly one row, with its default; and the standard AWS variables mean what they should."""

from __future__ import annotations

import re
from pathlib import Path

from s3proxy.config import SETTINGS, load

README = Path(__file__).parent.parent / "README.md"
ROW = re.compile(r"^\| `([A-Z0-9_]+)` \| `(--[a-z0-9-]+)` \| (.*?) \| .+ \|$")
BASE = {"S3PROXY_VAULT_TRANSIT_KEY": "k", "VAULT_ADDR": "http://127.0.0.1:8200", "VAULT_TOKEN": "t"}


def _rows() -> dict[str, tuple[str, str]]:
    rows: dict[str, tuple[str, str]] = {}
    for line in README.read_text().splitlines():
        found = ROW.match(line)
        if found:
            env, flag, default = found.groups()
            assert env not in rows, f"{env} has two rows"
            rows[env] = (flag, default)
    return rows


def test_every_setting_has_one_row_with_its_flag_and_default() -> None:
    rows = _rows()
    assert set(rows) == {s.env for s in SETTINGS}, set(rows) ^ {s.env for s in SETTINGS}
    for setting in SETTINGS:
        flag, default = rows[setting.env]
        assert flag == setting.flag, setting.env
        if setting.default is not None:  # (computed defaults are described in words)
            assert default.startswith(f"`{setting.default}`"), (setting.env, default)


def test_flags_and_environment_are_one_name_each() -> None:
    for setting in SETTINGS:
        assert setting.env.startswith(("S3PROXY_", "VAULT_")), setting.env
        assert setting.flag == "--" + setting.env.removeprefix("S3PROXY_").lower().replace(
            "_", "-"
        ), setting.flag


def test_standard_aws_variables_apply_only_to_the_proxys_own_calls() -> None:
    config = load({**BASE, "AWS_ENDPOINT_URL_STS": "https://sts.eu-central-1.amazonaws.com"})
    assert config.upstream.credentials.sts_endpoint == "https://sts.eu-central-1.amazonaws.com"
    explicit = load(
        {
            **BASE,
            "AWS_ENDPOINT_URL_STS": "https://sts.eu-central-1.amazonaws.com",
            "S3PROXY_STS_ENDPOINT": "https://sts.example.eu",
        }
    )
    assert explicit.upstream.credentials.sts_endpoint == "https://sts.example.eu"
    workload = load(
        {
            **BASE,
            "AWS_REGION": "eu-west-1",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:8190",
            "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:8190",
        }
    )
    assert workload.upstream.endpoint == "https://s3.eu-west-1.amazonaws.com"
    assert workload.upstream.credentials.sts_endpoint is None
