"""The scrape config and alert rules of docs/observability.md are valid, and each rule fires.

Checked with Prometheus's own ``promtool`` (Debian package ``prometheus``), skipped where
it is not installed: synthetic series of a worker that polls, then stops; that spends
half its time in the 429 cool-down; whose polls start up to a minute late.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

OBSERVABILITY = Path(__file__).parent.parent / "docs" / "observability.md"
PROMTOOL = shutil.which("promtool")
# `make test` installs it; in CI (CI=true) a missing promtool fails instead of skipping.
pytestmark = pytest.mark.skipif(
    PROMTOOL is None and os.environ.get("CI") != "true",
    reason="promtool (Debian: prometheus) absent",
)

RULES_TEST = """\
rule_files: [rules.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'up{job="acp-workers", instance="w1"}'
        values: '1x60'
      - series: 'acp_watch_polls_total{job="acp-workers", instance="w1", result="ok"}'
        values: '0+10x20 200x40'
      - series: 'acp_rate_limited_seconds_total{job="acp-workers", instance="w1"}'
        values: '0+30x60'
      - series: 'acp_watch_poll_delay_seconds_bucket{job="acp-workers", instance="w1", le="1"}'
        values: '0+9x20 180+1x40'
      - series: 'acp_watch_poll_delay_seconds_bucket{job="acp-workers", instance="w1", le="30"}'
        values: '0+9x20 180+1x40'
      - series: 'acp_watch_poll_delay_seconds_bucket{job="acp-workers", instance="w1", le="60"}'
        values: '0+10x60'
      - series: 'acp_watch_poll_delay_seconds_bucket{job="acp-workers", instance="w1", le="+Inf"}'
        values: '0+10x60'
    alert_rule_test:
      - eval_time: 15m
        alertname: ACPWorkerNotPolling
        exp_alerts: []
      - eval_time: 40m
        alertname: ACPWorkerNotPolling
        exp_alerts:
          - exp_labels: {severity: page, instance: w1}
            exp_annotations: {summary: "w1 is not polling ACP servers"}
      - eval_time: 15m
        alertname: ACPRateLimited
        exp_alerts: []
      - eval_time: 40m
        alertname: ACPRateLimited
        exp_alerts:
          - exp_labels: {severity: ticket, instance: w1, job: acp-workers}
            exp_annotations: {summary: "w1 is rate-limited 50% of the time"}
      - eval_time: 20m
        alertname: ACPPollsLate
        exp_alerts: []
      - eval_time: 59m
        alertname: ACPPollsLate
        exp_alerts:
          - exp_labels: {severity: ticket, instance: w1}
            exp_annotations: {summary: "w1: 90% of polls start up to 56.67s late"}
"""


def readme_yaml(marker: str) -> str:
    """docs/observability.md's ```yaml block that contains ``marker``."""
    blocks = re.findall(r"```yaml\n(.*?)```", OBSERVABILITY.read_text(), re.S)
    (block,) = [b for b in blocks if marker in b]
    return block


def promtool(*args: str) -> str:
    assert PROMTOOL is not None
    done = subprocess.run(
        [PROMTOOL, *args], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_scrape_config_is_valid(tmp_path: Path) -> None:
    """promtool accepts the scrape config."""
    config = tmp_path / "prometheus.yml"
    config.write_text(readme_yaml("scrape_configs:"))
    promtool("check", "config", "--syntax-only", str(config))


def test_the_alert_rules_fire_when_they_should(tmp_path: Path) -> None:
    """Three rules; each fires on its situation and not before."""
    (tmp_path / "rules.yml").write_text(readme_yaml("groups:"))
    assert "SUCCESS: 3 rules found" in promtool("check", "rules", str(tmp_path / "rules.yml"))
    (tmp_path / "test.yml").write_text(RULES_TEST)
    promtool("test", "rules", str(tmp_path / "test.yml"))
