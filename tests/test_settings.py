"""core.settings: env over secrets over defaults; bad values refused with the setting's name."""

from pathlib import Path

import pytest

from core.errors import ClassLensError
from core.settings import Settings, load


def test_defaults_are_local_and_permissive():
    s = load({}, env={})
    assert s == Settings()
    assert not s.hosted and s.allow_code_checkpoints and s.server_paths_allowed


def test_hosted_from_secrets_refuses_code_and_server_paths_without_roots():
    s = load({"hosted": True}, env={})
    assert s.hosted and not s.allow_code_checkpoints and not s.server_paths_allowed


def test_env_wins_over_secrets(tmp_path: Path):
    s = load(
        {"hosted": False, "max_upload_mb": 5, "allowed_roots": ["/nowhere"]},
        env={"CLASSLENS_HOSTED": "1", "CLASSLENS_ALLOWED_ROOTS": f"{tmp_path},{tmp_path}/b"},
    )
    assert s.hosted and s.max_upload_mb == 5
    assert s.allowed_roots == (tmp_path.resolve(), (tmp_path / "b").resolve())
    assert s.server_paths_allowed


def test_passwords_imply_password_auth_and_emails_are_lower_case():
    s = load({"editor_password": "x", "editors": ["Ann@Example.org"]}, env={})
    assert s.auth == "password" and s.editors == ("ann@example.org",)
    assert load({"editor_password": "x", "auth": "oidc"}, env={}).auth == "oidc"


@pytest.mark.parametrize(
    ("secrets", "env", "match"),
    [
        ({"hosted": "maybe"}, {}, "CLASSLENS_HOSTED must be true or false"),
        ({}, {"CLASSLENS_AUTH": "ldap"}, "CLASSLENS_AUTH must be one of none, oidc, password"),
        ({"max_upload_mb": 0}, {}, "CLASSLENS_MAX_UPLOAD_MB must be at least 1"),
        ({"max_zip_files": "lots"}, {}, "CLASSLENS_MAX_ZIP_FILES must be a whole number"),
        ({"hostd": True}, {}, "unknown setting.*hostd"),
    ],
    ids=["bool", "auth", "min", "int", "unknown"],
)
def test_bad_values_are_refused_with_the_setting_name(secrets, env, match):
    with pytest.raises(ClassLensError, match=match):
        load(secrets, env=env)
