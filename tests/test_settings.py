"""core.hosting.settings: env over secrets over defaults; bad values refused with the setting's
name."""

from dataclasses import fields
from pathlib import Path

import pytest

from core.errors import ClassLensError
from core.hosting.settings import Settings, check_address, describe, load
from core.hosting.settings import main as settings_main


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
    pw = "x" * 12  # the shortest password allowed by default
    s = load({"editor_password": pw, "editors": ["Ann@Example.org"]}, env={})
    assert s.auth == "password" and s.editors == ("ann@example.org",)
    assert load({"editor_password": pw, "auth": "oidc"}, env={}).auth == "oidc"


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


# Issue 13, item 1: an empty environment variable is unset, so secrets keep their values.
SECRETS = {
    "hosted": True,
    "auth": "oidc",
    "editors": ["ed@example.org"],
    "viewers": ["vi@example.org"],
    "allowed_roots": ["/srv/models"],
    "viewer_password": "viewer-password-long",
    "editor_password": "editor-password-long",
}


@pytest.mark.parametrize("name", sorted(SECRETS))
@pytest.mark.parametrize("blank", ["", "  "], ids=["empty", "spaces"])
def test_an_empty_environment_variable_does_not_override_secrets(name, blank):
    expected = getattr(load(SECRETS, env={}), name)
    got = load(SECRETS, env={"CLASSLENS_" + name.upper(): blank})
    assert getattr(got, name) == expected
    assert expected not in (None, (), False, "none")  # the secret really had something to lose


def test_an_empty_hosted_variable_keeps_a_hosted_server_closed_to_code():
    s = load({"hosted": True}, env={"CLASSLENS_HOSTED": ""})
    assert s.hosted and not s.allow_code_checkpoints
    # An explicit value still wins, as documented.
    assert not load({"hosted": True}, env={"CLASSLENS_HOSTED": "0"}).hosted


@pytest.mark.parametrize("password", [" ", "short", "  eleven-chr  ", "x" * 11])
def test_short_or_blank_passwords_keep_the_server_closed(password):
    with pytest.raises(ClassLensError, match="at least 12"):
        load({"editor_password": password}, env={})
    if password.strip():  # a blank variable is unset, not a blank password
        with pytest.raises(ClassLensError, match="CLASSLENS_VIEWER_PASSWORD is"):
            load({}, env={"CLASSLENS_VIEWER_PASSWORD": password})
    assert load({"editor_password": "x" * 12}, env={}).editor_password == "x" * 12
    shorter = load({"editor_password": "x" * 6, "min_password_length": 6}, env={})
    assert shorter.editor_password == "x" * 6


def test_oidc_unverified_claim_setting_is_a_boolean():
    assert not load({}, env={}).oidc_accept_unverified_claim
    assert load({"oidc_accept_unverified_claim": True}, env={}).oidc_accept_unverified_claim
    on = load({}, env={"CLASSLENS_OIDC_ACCEPT_UNVERIFIED_CLAIM": "yes"})
    assert on.oidc_accept_unverified_claim
    with pytest.raises(ClassLensError, match="OIDC_ACCEPT_UNVERIFIED_CLAIM must be true or"):
        load({"oidc_accept_unverified_claim": "sometimes"}, env={})


def test_the_settings_line_names_every_setting_and_no_secret():
    s = load(SECRETS, env={"CLASSLENS_MAX_UPLOAD_MB": "50"})
    line = describe(s)
    for f in fields(Settings):
        assert f" {f.name}=" in line
    assert "viewer-password-long" not in line and "editor-password-long" not in line
    assert "viewer_password=set" in line and "editor_password=set" in line
    assert "(hosted)" in line and "hosted=true" in line and "max_upload_mb=50" in line
    assert "editors=[ed@example.org]" in line
    assert "viewer_password=unset" in describe(load({}, env={}))


def test_the_settings_command_prints_the_line_and_fails_closed(tmp_path: Path, capsys):
    good = tmp_path / "good.toml"
    good.write_text('[classlens]\nhosted = true\neditor_password = "a-long-enough-password"\n')
    assert settings_main([str(good)]) == 0
    err = capsys.readouterr().err
    assert "(hosted)" in err and "editor_password=set" in err
    assert "a-long-enough-password" not in err
    bad = tmp_path / "bad.toml"
    bad.write_text('[classlens]\nhosted = true\neditor_password = "pw"\n')
    assert settings_main([str(bad)]) == 2
    assert "error: CLASSLENS_EDITOR_PASSWORD is 2 character(s) long" in capsys.readouterr().err
    broken = tmp_path / "broken.toml"
    broken.write_text("[classlens\n")
    assert settings_main([str(broken)]) == 2
    assert "cannot read" in capsys.readouterr().err


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.1.1", "localhost", "::1"])
def test_local_mode_may_bind_loopback(address):
    check_address(load({}, env={}), address, env={})


@pytest.mark.parametrize("address", ["0.0.0.0", "192.168.1.5", "::", "example.org"])
def test_local_mode_beyond_loopback_is_refused_unless_said(address):
    with pytest.raises(ClassLensError, match="CLASSLENS_LOCAL_ON_NETWORK=1"):
        check_address(load({}, env={}), address, env={})
    check_address(load({}, env={}), address, env={"CLASSLENS_LOCAL_ON_NETWORK": "1"})
    check_address(load({"hosted": True}, env={}), address, env={})  # hosted: login in front


def test_hosted_mode_lowers_the_default_upload_cap_only():
    assert load({}, env={}).max_upload_mb == 200
    assert load({"hosted": True}, env={}).max_upload_mb == 100
    assert load({}, env={"CLASSLENS_HOSTED": "1"}).max_upload_mb == 100
    assert load({"hosted": True, "max_upload_mb": 300}, env={}).max_upload_mb == 300
    assert load({"hosted": True}, env={"CLASSLENS_MAX_UPLOAD_MB": "20"}).max_upload_mb == 20


def test_the_job_memory_cap_is_off_locally_and_on_by_default_when_hosted():
    from core.hosting.settings import HOSTED_JOB_MEMORY_MB

    assert load({}, env={}).job_memory_mb is None  # local: the analyst's own machine
    assert load({"hosted": True}, env={}).job_memory_mb == HOSTED_JOB_MEMORY_MB == 8192
    assert load({}, env={"CLASSLENS_HOSTED": "1"}).job_memory_mb == HOSTED_JOB_MEMORY_MB
    assert load({"hosted": True, "job_memory_mb": 16384}, env={}).job_memory_mb == 16384
    assert load({}, env={"CLASSLENS_JOB_MEMORY_MB": "2048"}).job_memory_mb == 2048  # local too
    with pytest.raises(ClassLensError, match="CLASSLENS_JOB_MEMORY_MB must be at least 1"):
        load({"hosted": True, "job_memory_mb": 0}, env={})
    with pytest.raises(ClassLensError, match="CLASSLENS_JOB_MEMORY_MB must be a whole number"):
        load({}, env={"CLASSLENS_JOB_MEMORY_MB": "8 GB"})
    assert " job_memory_mb=none" in describe(load({}, env={}))
    assert " job_memory_mb=8192" in describe(load({"hosted": True}, env={}))
