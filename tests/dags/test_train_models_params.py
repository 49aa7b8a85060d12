"""train_models' params default to the settings, and unpausing it schedules no run at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from pipelines.orchestration.airflow_runner import DAGS_FOLDER

PARSE = """
import json, sys
import pendulum
from airflow.dag_processing.dagbag import DagBag
from airflow.serialization.serialized_objects import DagSerialization
dag = DagBag(dag_folder=sys.argv[1]).dags["train_models"]
first = DagSerialization.from_dict(DagSerialization.to_dict(dag)).next_dagrun_info(last_automated_run_info=None)
print(json.dumps({"params": {k: dag.params[k] for k in dag.params}, "start_date": str(dag.start_date),
                  "now": pendulum.now("UTC").isoformat(), "first_run_after": first.run_after.isoformat()}))
"""


def parse_train_models(**env: str) -> dict:
    environ = {k: v for k, v in os.environ.items() if k not in env}
    result = subprocess.run([sys.executable, "-c", PARSE, str(DAGS_FOLDER)], capture_output=True, text=True,
                            env={**environ, **env}, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_param_defaults_are_the_settings():
    """ALPHAOPS_TRIALS/SYMBOLS/FAMILIES/HOLDOUT_FRACTION set what a scheduled run trains (the params
    used to hard-code trials=8 while Settings.trials is 6)."""
    from pipelines.config import Settings

    defaults = Settings()
    params = parse_train_models()["params"]
    assert {k: params[k] for k in ("symbols", "families", "trials", "holdout_fraction")} == {
        "symbols": defaults.symbols, "families": defaults.families, "trials": defaults.trials,
        "holdout_fraction": defaults.holdout_fraction}
    assert params["trials"] == 6 and params["user"] == ""

    params = parse_train_models(ALPHAOPS_TRIALS="3", ALPHAOPS_SYMBOLS='["SYNX"]',
                                ALPHAOPS_FAMILIES='["volatility"]', ALPHAOPS_HOLDOUT_FRACTION="0.3",
                                ALPHAOPS_USER="ann")["params"]
    assert params["trials"] == 3 and params["symbols"] == ["SYNX"] and params["families"] == ["volatility"]
    assert params["holdout_fraction"] == 0.3 and params["user"] == "ann"


def test_unpausing_schedules_the_first_run_at_the_next_slot_not_now():
    """The first scheduled run waits for the next 00:00 or 12:00 UTC (a DeltaTriggerTimetable or a
    past start_date with catchup=False started a full run the moment the DAG was unpaused)."""
    import pandas as pd

    parsed = parse_train_models()
    now, first = pd.Timestamp(parsed["now"]), pd.Timestamp(parsed["first_run_after"])
    assert parsed["start_date"] == "None"
    assert now < first <= now + pd.Timedelta(hours=12)
    assert (first.hour, first.minute, first.second) in {(0, 0, 0), (12, 0, 0)}
