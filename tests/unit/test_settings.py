import json
import os

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

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
    with pytest.raises(ConfigError, match="unknown setting 'bogus'"):
        Settings.load().with_overrides(bogus__x=1)
    with pytest.raises(ConfigError, match=r"n \(given as an argument\): input should be greater than or equal to 1"):
        Settings.load(n=0)


# ---------------------------------------------------------------- one rule for every source

CANARY = "hunter2canary"  # nothing marks it as a secret: no value may be echoed at all


@pytest.mark.parametrize("source", ["toml", "env", "dotenv", "override", "argument"])
def test_a_nested_typo_is_refused_in_every_source_with_the_closest_name(source, tmp_path, monkeypatch):
    if source == "toml":
        (tmp_path / "rfprm.toml").write_text("[generator]\ntemprature = 0.5\n")
    elif source == "env":
        monkeypatch.setenv("RFPRM_GENERATOR__TEMPRATURE", "0.5")
    elif source == "dotenv":
        (tmp_path / ".env").write_text("RFPRM_GENERATOR__TEMPRATURE=0.5\n")
    with pytest.raises(
        ConfigError, match=r"unknown setting 'generator\.temprature' .*did you mean 'generator\.temperature'"
    ):
        if source == "override":
            Settings.load().with_overrides(generator__temprature=0.5)
        elif source == "argument":
            Settings.load(generator={"temprature": 0.5})
        else:
            Settings.load()


def test_foreign_variables_are_none_of_our_business(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text(f"OPENAI_API_KEY={CANARY}\nFOO=bar\nnot a line\nRFPRM_N=3\n")
    monkeypatch.setenv("DATABASE_URL", f"postgres://u:{CANARY}@h/db")
    assert Settings.load().n == 3


def test_errors_name_the_source_and_line_and_never_the_secret(tmp_path, monkeypatch):
    (tmp_path / "rfprm.toml").write_text(f'n = 2\n\n[generator]\napi_key = "{CANARY}"\ntemperature = "hot"\n')
    monkeypatch.setenv("RFPRM_PRM__API_KEY", CANARY)
    with pytest.raises(ConfigError) as caught:
        Settings.load()
    assert "generator.temperature (in rfprm.toml line 5)" in str(caught.value)
    assert CANARY not in str(caught.value) and "\n" not in str(caught.value)


def test_a_section_given_as_one_value_says_to_write_a_table(tmp_path, monkeypatch):
    (tmp_path / "rfprm.toml").write_text(f'selector = "{CANARY}"\n')
    with pytest.raises(ConfigError) as caught:
        Settings.load()
    message = str(caught.value)
    assert (
        "selector (in rfprm.toml line 1): is a section of keys: write them under [selector] with model = ..." in message
    )
    assert CANARY not in message
    (tmp_path / "rfprm.toml").write_text("[prm]\nvllm = 3\n")
    with pytest.raises(
        ConfigError, match=r"prm.vllm \(in rfprm.toml line 2\): is a section of keys: write them under \[prm.vllm\]$"
    ):
        Settings.load()


def test_a_literal_setting_lists_its_choices_once():
    with pytest.raises(ConfigError) as caught:
        Settings.load(prm={"aggregation": "median"})
    assert str(caught.value).count("prm.aggregation") == 1
    assert "must be one of last, min, mean, prod, reasonflux, auto or learned:PATH" in str(caught.value)
    assert "median" not in str(caught.value)  # never the value given


KNOWN = [
    "N",
    "STRATEGY",
    "STRATEGY_PARAMS",
    "STEP_SEPARATOR",
    "GENERATOR__TEMPERATURE",
    "GENERATOR__STOP",
    "GENERATOR__MAX_TOKENS",
    "GENERATOR__API_KEY",
    "GENERATOR__BASE_URL",
    "GENERATOR__VLLM__ENGINE_KWARGS",
    "PRM__AGGREGATION",
    "PRM__BATCH_SIZE",
    "SERVE__API_KEYS",
    "SERVE__PORT",
    "GENERATOR",
    "PRM__VLLM",
]
NAMES = st.sampled_from(KNOWN) | st.from_regex(
    r"[A-Za-z_][A-Za-z0-9_]{0,12}(__[A-Za-z0-9_]{1,12}){0,2}", fullmatch=True
)


@hypothesis_settings(max_examples=300, deadline=None)
@given(st.dictionaries(NAMES, st.text(max_size=30), max_size=5), st.sampled_from(["env", "dotenv", "toml"]))
def test_any_settings_never_leak_a_value_nor_raise_anything_else(tmp_path_factory, values, source):
    """Whatever keys and values a source holds, loading gives settings or one ConfigError line
    that does not repeat any value given (each holds the canary)."""
    folder = tmp_path_factory.mktemp("s")
    given_ = {f"RFPRM_{k}": f"{CANARY}{v}" for k, v in values.items()}
    environ = {k: v for k, v in os.environ.items() if not k.upper().startswith("RFPRM_")}
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        if source == "env":
            environ.update({k: v.replace("\x00", "") for k, v in given_.items()})
        elif source == "dotenv":
            (folder / ".env").write_text(
                "".join(f"{k}={json.dumps(v)}\n" for k, v in given_.items()), encoding="utf-8", errors="surrogatepass"
            )
        else:
            (folder / "rfprm.toml").write_text(
                "".join(f"{k[6:].lower().replace('__', '.')} = {json.dumps(v)}\n" for k, v in given_.items()),
                encoding="utf-8",
                errors="surrogatepass",
            )
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(environ)
        try:
            Settings.load()
        except ConfigError as exc:
            assert CANARY not in str(exc) and "\n" not in str(exc)
        finally:
            os.environ.clear()
            os.environ.update(saved)
    finally:
        os.chdir(cwd)
