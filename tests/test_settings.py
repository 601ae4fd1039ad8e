"""Settings declared once: defaults < TOML < FALAJ_* environment < CLI flags."""

from pathlib import Path

import pytest

from appliance import settings


def test_defaults(tmp_path):
    v = settings.load({"home": str(tmp_path)})
    assert v["port"] == 8080 and v["host"] == "127.0.0.1" and v["holdout_fraction"] == 0.2
    assert v["home"] == str(tmp_path.resolve())


def test_precedence(tmp_path, monkeypatch):
    (tmp_path / "falaj.toml").write_text('port = 9000\nhost = "0.0.0.0"\nl2_c = 0.5\n')
    v = settings.load({"home": str(tmp_path)})
    assert (v["port"], v["host"], v["l2_c"]) == (9000, "0.0.0.0", 0.5)
    monkeypatch.setenv("FALAJ_PORT", "9100")
    v = settings.load({"home": str(tmp_path)})
    assert (v["port"], v["host"]) == (9100, "0.0.0.0")
    v = settings.load({"home": str(tmp_path), "port": 9200})
    assert v["port"] == 9200


def test_home_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("FALAJ_HOME", str(tmp_path / "h"))
    assert settings.load()["home"] == str((tmp_path / "h").resolve())


def test_bad_values_name_their_source(tmp_path, monkeypatch):
    (tmp_path / "falaj.toml").write_text("colour = 3\n")
    with pytest.raises(ValueError, match=r"falaj.toml: unknown setting 'colour'"):
        settings.load({"home": str(tmp_path)})
    (tmp_path / "falaj.toml").write_text("port = 'eighty'\n")
    with pytest.raises(ValueError, match=r"setting 'port' expects int, got 'eighty'"):
        settings.load({"home": str(tmp_path)})
    (tmp_path / "falaj.toml").unlink()
    monkeypatch.setenv("FALAJ_THREADS", "many")
    with pytest.raises(ValueError, match="FALAJ_THREADS"):
        settings.load({"home": str(tmp_path)})


def test_bad_setting_is_exit_2_on_the_cli(falaj, home, monkeypatch):
    monkeypatch.setenv("FALAJ_PORT", "x")
    r = falaj("settings")
    assert r.exit_code == 2 and "FALAJ_PORT" in r.stderr


def test_every_setting_is_documented_in_the_readme():
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    for s in settings.SETTINGS:
        assert f"`{s.env}`" in readme, f"{s.env} is not documented in README.md"


def test_the_device_setting_reaches_the_kernels(tmp_path, monkeypatch):
    import kernels
    from appliance.core import Appliance

    monkeypatch.delenv("FALAJ_DEVICE", raising=False)
    (tmp_path / "falaj.toml").write_text('device = "cpu"\n')
    try:
        Appliance.open({"home": str(tmp_path)})
        assert kernels.get_device() == "cpu"
        Appliance.open({"home": str(tmp_path), "device": "auto"})
        assert kernels.get_device() == "auto"
        (tmp_path / "falaj.toml").write_text('device = "gpu"\n')
        with pytest.raises(ValueError, match="must be one of auto, cpu, cuda"):
            Appliance.open({"home": str(tmp_path)})
    finally:
        kernels.set_device(None)
