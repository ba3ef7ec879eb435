"""The alert rules against the real promtool (Debian's prometheus package): `check rules` on the shipped file
and on `asrtop export alert-rules` with a cluster file's [problems]; `test rules` with the unit-test file
beside the shipped rules (GPU leak, 5xx share, ASR down, model differs, GPU hot; one not firing before its
`for:`). A missing promtool FAILS in CI (conftest.require_binary)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from asrtop.cli import main

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "agents" / "deploy"


def promtool(binary: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def test_promtool_checks_the_shipped_rules(promtool_bin):
    r = promtool(promtool_bin, "check", "rules", str(DEPLOY / "asrtop-alerts.rules.yml"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: 17 rules found" in r.stdout


def test_promtool_unit_tests_fire_and_wait_for_their_durations(promtool_bin):
    r = promtool(promtool_bin, "test", "rules", "tests/asrtop-alerts.test.yml", cwd=DEPLOY)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def test_exported_rules_from_a_cluster_file_pass_promtool(promtool_bin, tmp_path, capsys):
    digest = "8f1a191" + "a" * 57
    cfg = tmp_path / "asrtop.toml"
    cfg.write_text("[cluster]\n" f'model_sha256 = "{digest}"\n'
                   "[[nodes]]\nname = \"node-1\"\nagent = \"http://127.0.0.1:10860\"\n"
                   "[problems]\nleak_window = 300\nleak_for = 90\ngpu_temp_critical = 95\n")
    assert main(["export", "alert-rules", "--config", str(cfg)]) == 0
    text = capsys.readouterr().out
    assert "deriv(asr_gpu_memory_used_bytes[5m])" in text and "for: 90s" in text
    assert "asr_gpu_temperature_celsius > 95" in text and f'sha256!="{digest}"' in text
    out = tmp_path / "exported.rules.yml"
    out.write_text(text)
    r = promtool(promtool_bin, "check", "rules", str(out))
    assert r.returncode == 0, r.stdout + r.stderr


def test_export_without_a_cluster_file_prints_the_defaults_and_the_dashboard(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "none"))
    assert main(["export", "alert-rules"]) == 0
    assert capsys.readouterr().out == (DEPLOY / "asrtop-alerts.rules.yml").read_text()
    assert main(["export", "grafana-dashboard"]) == 0
    assert json.loads(capsys.readouterr().out)["uid"] == "asrtop-fleet"
    assert main(["export", "alert-rules", "--config", str(tmp_path / "missing.toml")]) == 2
    assert "config file not found" in capsys.readouterr().err
