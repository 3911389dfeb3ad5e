import json

import pytest

from rfprm_tts import ConfigError, Settings


def test_env_prefix_and_nested_delimiter(monkeypatch):
    monkeypatch.setenv("RFPRM_GENERATOR__BASE_URL", "http://h:1/v1")
    monkeypatch.setenv("RFPRM_PRM__MODEL", "/models/prm")
    monkeypatch.setenv("RFPRM_N", "16")
    s = Settings.load()
    assert (s.generator.base_url, s.prm.model, s.n) == ("http://h:1/v1", "/models/prm", 16)


def test_dotenv_and_toml_files_with_env_winning(monkeypatch, tmp_path):
    (tmp_path / "rfprm.toml").write_text('n = 4\nstrategy = "best_of_n"\n[prm]\naggregation = "min"\nalpha = 0.5\n')
    (tmp_path / ".env").write_text("RFPRM_PRM__ALPHA=2.0\n")
    s = Settings.load()
    assert (s.n, s.prm.aggregation, s.prm.alpha) == (4, "min", 2.0)
    monkeypatch.setenv("RFPRM_N", "32")
    assert Settings.load().n == 32


def test_config_path_from_env(monkeypatch, tmp_path):
    path = tmp_path / "elsewhere.toml"
    path.write_text("[generator]\ntemperature = 0.25\n")
    monkeypatch.setenv("RFPRM_CONFIG", str(path))
    assert Settings.load().generator.temperature == 0.25
    monkeypatch.setenv("RFPRM_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="missing.toml"):
        Settings.load()


def test_api_key_is_never_printed(monkeypatch):
    monkeypatch.setenv("RFPRM_GENERATOR__API_KEY", "sk-very-secret")
    s = Settings.load()
    assert s.generator.api_key.get_secret_value() == "sk-very-secret"
    for text in (repr(s), str(s), s.model_dump_json(), json.dumps(s.model_dump(mode="json"))):
        assert "sk-very-secret" not in text
    # Overrides keep the real key.
    assert s.with_overrides(n=2).generator.api_key.get_secret_value() == "sk-very-secret"


def test_overrides_route_fields_sections_and_strategy_params():
    s = Settings.load().with_overrides(n=3, generator__temperature=0.5, beam_width=4)
    assert (s.n, s.generator.temperature, s.strategy_params) == (3, 0.5, {"beam_width": 4})
    with pytest.raises(ConfigError, match="prm.aggregation"):
        Settings.load().with_overrides(prm__aggregation="median")
    with pytest.raises(ConfigError, match="unknown settings section"):
        Settings.load().with_overrides(bogus__x=1)
    with pytest.raises(ConfigError, match="n: Input should be greater than or equal to 1"):
        Settings.load(n=0)
