"""The committed browser bundles in web/static/vendor/ match web/codemirror/'s sources: the
versions named in codemirror.js's banner are package-lock.json's, htmx.min.js is the locked
htmx.org 2.x, and the schema copy the completion tests use is the current one. A stale
bundle fails here; rebuild with `cd web/codemirror && npm ci && npm run build`."""

from __future__ import annotations

import json
import re
from pathlib import Path

from engine.rules.schema import rule_file_schema

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "web" / "codemirror"
VENDOR = ROOT / "web" / "static" / "vendor"
REBUILD = "rebuild: cd web/codemirror && npm ci && npm run build"


def locked_versions() -> dict[str, str]:
    lock = json.loads((SOURCE / "package-lock.json").read_text())
    return {
        path.removeprefix("node_modules/"): entry["version"]
        for path, entry in lock["packages"].items()
        if path.startswith("node_modules/")
    }


def banner_versions(bundle: str) -> dict[str, str]:
    banner = bundle[: bundle.index("*/")]
    return dict(re.findall(r"^ \*   ((?:@[\w.-]+/)?[\w.-]+)@(\S+)$", banner, re.MULTILINE))


def test_codemirror_bundle_defines_the_editor_api() -> None:
    bundle = (VENDOR / "codemirror.js").read_text()
    assert bundle.startswith("/*! omi-rules YAML editor (window.OmiCodeMirror)")
    assert "var OmiCodeMirror=function(" in bundle
    assert "createYamlEditor=function(" in bundle
    for method in ("getText:", "setText(", "setDiagnostics(", "focus:"):
        assert method in bundle, method
    # script-src 'self' without 'unsafe-eval'
    assert "new Function" not in bundle
    assert "eval(" not in bundle


def test_codemirror_banner_versions_are_the_locked_ones() -> None:
    banner = banner_versions((VENDOR / "codemirror.js").read_text())
    locked = locked_versions()
    assert banner, "no package versions in the bundle's banner"
    assert {name: locked.get(name) for name in banner} == banner, REBUILD
    declared = json.loads((SOURCE / "package.json").read_text())["devDependencies"]
    bundled = {name for name in declared if name.startswith("@codemirror/")}
    assert bundled <= set(banner), REBUILD


def test_package_json_pins_exactly_what_is_locked() -> None:
    declared = json.loads((SOURCE / "package.json").read_text())["devDependencies"]
    locked = locked_versions()
    assert {name: locked[name] for name in declared} == declared


def test_htmx_is_the_locked_2x_release() -> None:
    version = locked_versions()["htmx.org"]
    assert version.startswith("2."), version
    htmx = (VENDOR / "htmx.min.js").read_text()
    assert f'version:"{version}"' in htmx, REBUILD


def test_completion_tests_use_the_current_rule_file_schema() -> None:
    copy = json.loads((SOURCE / "test" / "rule-file.schema.json").read_text())
    assert copy == rule_file_schema(), (
        "refresh: python -m engine.cli schema > web/codemirror/test/rule-file.schema.json"
    )
