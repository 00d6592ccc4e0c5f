"""What a user types: the Dagster CLI backfill, the schedule, `kwai`."""
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from kwai_assets.cli import main
from kwai_assets.definitions import defs

BIN = Path(sys.executable).parent


def env_for(home):
    return {**os.environ, "KWAI_HOME": str(home), "KWAI_PRESET": "tiny", "DAGSTER_HOME": str(home / "dagster")}


def test_backfill_a_date_range_from_the_cli(tmp_path):
    env = env_for(tmp_path)
    (tmp_path / "dagster").mkdir()
    (tmp_path / "dagster" / "dagster.yaml").write_text(Path("dagster.yaml").read_text())
    run = subprocess.run(
        [BIN / "dagster", "asset", "materialize", "-m", "kwai_assets.definitions", "--select", "raw_interactions",
         "--partition-range", "2026-01-03...2026-01-06",
         "--config-json", '{"execution": {"config": {"in_process": {}}}}'],
        env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    days = sorted(p.stem for p in (tmp_path / "warehouse" / "raw_interactions").glob("*.parquet"))
    assert days == ["2026-01-03", "2026-01-04", "2026-01-05", "2026-01-06"]
    sql = subprocess.run([BIN / "kwai", "sql", "select count(distinct pdate) as days from raw_interactions"],
                         env=env, capture_output=True, text=True, check=True)
    assert sql.stdout.split() == ["days", "4"]


def test_daily_schedule_asks_for_yesterday():
    schedule = defs.resolve_schedule_def("daily_refresh_schedule")
    context = dg.build_schedule_context(scheduled_execution_time=datetime(2026, 3, 10, 2, 0, tzinfo=UTC))
    requests = schedule.evaluate_tick(context).run_requests
    assert [r.partition_key for r in requests] == ["2026-03-09"]
    job = defs.resolve_job_def("daily_refresh")
    keys = {k.to_user_string() for k in job.asset_layer.executable_asset_keys}
    assert keys >= {"raw_interactions", "splits", "evaluation"}


def test_kwai_days_prints_the_partition_range(monkeypatch, capsys):
    monkeypatch.setenv("KWAI_PRESET", "tiny")
    assert main(["days"]) == 0
    assert capsys.readouterr().out.strip() == "2026-01-01...2026-01-14"


def test_definitions_load():
    dg.Definitions.validate_loadable(defs)


def test_kwai_run_records_the_run_and_prints_step_times(tmp_path):
    env = env_for(tmp_path)
    (tmp_path / "dagster").mkdir()
    (tmp_path / "dagster" / "dagster.yaml").write_text(Path("dagster.yaml").read_text())
    run = subprocess.run([BIN / "kwai", "run", "ingest", "--days", "2026-01-02...2026-01-03"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "raw_interactions" in run.stdout and "wall time per step" in run.stdout
    assert sorted(p.stem for p in (tmp_path / "warehouse" / "raw_interactions").glob("*.parquet")) == [
        "2026-01-02", "2026-01-03"]
    with dg.DagsterInstance.from_config(str(tmp_path / "dagster")) as instance:
        [recorded] = instance.get_runs()
        assert recorded.job_name == "ingest" and recorded.status == dg.DagsterRunStatus.SUCCESS
    failed = subprocess.run([BIN / "kwai", "run", "no_such_job"], env=env, capture_output=True, text=True,
                            timeout=300)
    assert failed.returncode == 1 and "no_such_job" in failed.stderr


def test_the_configuration_reference_is_generated_from_the_code():
    from kwai_assets.reference import config_reference

    assert Path("docs/configuration.md").read_text() == config_reference(defs) + "\n", \
        "docs/configuration.md is stale: run `kwai config > docs/configuration.md`"


def test_every_asset_and_check_has_a_description_in_the_ui():
    undescribed = [s.key.to_user_string() for s in defs.resolve_all_asset_specs() if not s.description]
    undescribed += [c.name for d in defs.asset_checks for c in d.check_specs if not c.description]
    assert not undescribed
