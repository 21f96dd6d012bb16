"""The PQC self-test and the liboqs guard, in-process."""

from __future__ import annotations

from pathlib import Path

import pytest

from tallow import pqc
from tallow.config import ConfigError


def test_cryptography_backend_passes_its_round_trips() -> None:
    result = pqc.self_test("cryptography")
    assert result.ok and result.algorithms == ("ML-KEM-768", "ML-DSA-65")


def test_a_failing_round_trip_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> None:
        raise RuntimeError("no shared secret")

    monkeypatch.setitem(pqc._ROUND_TRIPS, "cryptography", broken)
    result = pqc.self_test("cryptography")
    assert not result.ok and result.detail == "RuntimeError: no shared secret"


@pytest.fixture
def liboqs_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An importable ``oqs`` package that fails the test if anything imports it: like the real
    one without its C library, which tries to build liboqs and exits."""
    package = tmp_path / "site" / "oqs"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise SystemExit('oqs imported before the check')\n")
    monkeypatch.syspath_prepend(str(package.parent))
    monkeypatch.delenv("OQS_INSTALL_PATH", raising=False)
    monkeypatch.setattr(pqc.ctypes.util, "find_library", lambda name: None)
    return tmp_path


def test_liboqs_without_its_library_is_a_config_error_before_any_import(
    liboqs_python: Path,
) -> None:
    with pytest.raises(ConfigError, match="shared library was not found"):
        pqc.ensure_available("liboqs")


def test_liboqs_found_through_oqs_install_path(
    liboqs_python: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install = liboqs_python / "liboqs"
    (install / "lib").mkdir(parents=True)
    (install / "lib" / "liboqs.so").touch()
    monkeypatch.setenv("OQS_INSTALL_PATH", str(install))
    pqc.ensure_available("liboqs")  # no error, and still nothing imported oqs
