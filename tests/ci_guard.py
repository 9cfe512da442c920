"""A pytest plugin for CI (`CI=true`): a missing dependency fails the run instead of skipping.

Two checks, both only when the environment variable CI is true:
- at start, every requirement of the project's `all` and `dev` extras must be installed (at a
  version its specifier allows); otherwise the session stops with the list of what is missing;
- a test (or a test module) skipped because an import failed is reported as failed.

So a missing install step can never pass as green. Outside CI, skips stay skips.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from importlib import metadata

import pytest
from packaging.requirements import Requirement

PROJECT = "t3edge"
CI_EXTRAS = ("all", "dev")
IMPORT_SKIP_SIGNS = ("could not import", "No module named", "ImportError", "ModuleNotFoundError")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def requirements(dist: str, extras: Iterable[str], seen: set[str] | None = None) -> Iterator[Requirement]:
    """The requirements of `dist` with `extras` that apply on this platform; the project's
    self-references (`t3edge[mlx,llama]`) are followed."""
    seen = set() if seen is None else seen
    for extra in ("", *extras):
        if (dist, extra) in seen:
            continue
        seen.add((dist, extra))  # type: ignore[arg-type]
        for line in metadata.distribution(dist).requires or []:
            req = Requirement(line)
            if req.marker is not None and not req.marker.evaluate({"extra": extra}):
                continue
            if req.marker is None and extra:
                continue  # a base requirement: counted once, with extra ""
            if req.name.lower() == dist.lower():
                yield from requirements(dist, req.extras, seen)
            else:
                yield req


def missing(reqs: Iterable[Requirement]) -> list[str]:
    """The requirements not installed, or installed at a version outside their specifier."""
    out = []
    for req in reqs:
        try:
            version = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            out.append(f"{req.name} (not installed)")
            continue
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            out.append(f"{req.name} {version} (needs {req.specifier})")
    return sorted(set(out))


def is_import_skip(message: str) -> bool:
    return any(sign in message for sign in IMPORT_SKIP_SIGNS)


def pytest_sessionstart(session: pytest.Session) -> None:
    if not in_ci():
        return
    try:
        absent = missing(requirements(PROJECT, CI_EXTRAS))
    except metadata.PackageNotFoundError:
        absent = [f"{PROJECT} itself (run the README's install command)"]
    if absent:
        pytest.exit("CI: dependencies of the installed extras are missing: " + "; ".join(absent)
                    + ". Run the README's install command in a fresh environment.", returncode=3)


def _skip_message(longrepr: object) -> str:
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if not (in_ci() and report.skipped):
        return
    raised = call.excinfo.value if call.excinfo is not None else None
    if isinstance(getattr(raised, "__context__", None), ImportError) or is_import_skip(_skip_message(report.longrepr)):
        report.outcome = "failed"
        report.longrepr = f"CI: skipped for a missing dependency, which CI does not allow: {_skip_message(report.longrepr)}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if in_ci() and report.skipped and is_import_skip(_skip_message(report.longrepr)):
        report.outcome = "failed"
        report.longrepr = f"CI: {collector.nodeid} skipped for a missing dependency: {_skip_message(report.longrepr)}"
