"""Where Letta Code (or Letta's TypeScript SDK) cannot be had, its end-to-end tests skip with the reason,
unless CI asks for them (CONVERSATIONS_REQUIRE_LETTA_CODE=1), which turns the skip into a failure."""

from __future__ import annotations

import letta_code_helpers
import letta_ts_sdk_helpers
import pytest


def test_missing_node_skips_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(letta_code_helpers, "REQUIRED", False)
    monkeypatch.setattr(letta_code_helpers.shutil, "which", lambda name: None)
    with pytest.raises(pytest.skip.Exception, match="node is not on PATH"):
        letta_code_helpers.letta_code_path()


def test_missing_node_fails_when_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(letta_code_helpers, "REQUIRED", True)
    monkeypatch.setattr(letta_code_helpers.shutil, "which", lambda name: None)
    with pytest.raises(pytest.fail.Exception, match="CONVERSATIONS_REQUIRE_LETTA_CODE"):
        letta_code_helpers.letta_code_path()


def test_a_failed_install_skips_with_npm_s_reason(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setattr(letta_code_helpers, "REQUIRED", False)
    monkeypatch.setattr(letta_code_helpers, "CACHE", tmp_path / "letta-code")
    monkeypatch.setattr(letta_code_helpers, "_install", lambda target: "npm pack failed: E404")
    with pytest.raises(pytest.skip.Exception, match="E404"):
        letta_code_helpers.letta_code_path()


def test_the_typescript_sdk_follows_the_same_switch(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setattr(letta_ts_sdk_helpers, "CACHE", tmp_path / "letta-client")
    monkeypatch.setattr(letta_ts_sdk_helpers, "_install", lambda target: "npm pack failed: E404")
    monkeypatch.setattr(letta_code_helpers, "REQUIRED", False)
    with pytest.raises(pytest.skip.Exception, match="@letta-ai/letta-client .* E404"):
        letta_ts_sdk_helpers.letta_ts_sdk_modules()
    monkeypatch.setattr(letta_code_helpers, "REQUIRED", True)
    with pytest.raises(pytest.fail.Exception, match="CONVERSATIONS_REQUIRE_LETTA_CODE"):
        letta_ts_sdk_helpers.letta_ts_sdk_modules()
