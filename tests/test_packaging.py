"""Small things a newcomer meets first: the package metadata and `tumorlens config show`."""

import tomllib
from pathlib import Path

from tumorlens.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_the_license_is_an_spdx_expression_with_a_setuptools_that_reads_it():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["license"] == "MIT"  # PEP 639: a string, not the deprecated table
    assert "setuptools>=77" in meta["build-system"]["requires"]  # the first setuptools that reads it


def test_config_show_warns_when_the_data_root_does_not_exist(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TUMORLENS_DATA", str(tmp_path / "nowhere"))
    assert main(["config", "show", "--profile", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "warning: data_root" in err and "does not exist" in err and "TUMORLENS_DATA" in err
    monkeypatch.setenv("TUMORLENS_DATA", str(tmp_path))
    assert main(["config", "show", "--profile", "cpu"]) == 0
    assert "warning" not in capsys.readouterr().err
    assert main(["config", "show", "--profile", "smoke"]) == 0  # phantoms: no folder to look for
    assert "warning" not in capsys.readouterr().err
