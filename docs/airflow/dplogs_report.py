"""Airflow DAG: the nightly dplogs report, retried only when its exit code says it is temporary.

Copy into your DAGs folder and adjust the paths. Written for Airflow 2.x (BashOperator and
SubprocessHook); dplogs' tests run BASH_COMMAND against the sample store but not under Airflow.

Exit codes (README, dplogs/errors.py):
  75  another run of the same report period holds it (or the ledger stayed locked): RETRY
  77  budget exhausted: the periods left are named; the next night continues: STOP
  64  bad spec or option, 65 bad data, 66 missing store/spec, 70 a bug in dplogs,
  74  ledger or disk problem (never restore an older ledger): STOP and fix first
  69  the Spark engine failed (--engine spark): STOP, check the cluster (a retry may charge again)
"""

from __future__ import annotations

import datetime as dt

from airflow import DAG
from airflow.exceptions import AirflowException, AirflowFailException, AirflowSkipException
from airflow.operators.bash import BashOperator

RETRY_EXIT_CODES = {75}
STOP_EXIT_CODES = {64, 65, 66, 69, 70, 74, 77}

BASH_COMMAND = (
    '"$DPLOGS" report "$DPLOGS_SPEC" --store "$DPLOGS_STORE" --tz "$DPLOGS_TZ" '
    '--catch-up --out-dir "$DPLOGS_OUT" --wait 600'
)
ENV = {
    "DPLOGS": "/opt/dplogs/.venv/bin/dplogs",
    "DPLOGS_SPEC": "/etc/dplogs/nightly.toml",
    "DPLOGS_STORE": "/var/lib/dplogs/soc",
    "DPLOGS_OUT": "/var/lib/dplogs/reports",
    "DPLOGS_TZ": "Europe/Berlin",
}


class DplogsReportOperator(BashOperator):
    """A BashOperator whose failure is retried only for RETRY_EXIT_CODES; any other non-zero exit
    fails the task at once (AirflowFailException skips the remaining retries)."""

    def execute(self, context):
        try:
            return super().execute(context)
        except AirflowSkipException:
            raise
        except AirflowException as exc:
            code = self.subprocess_hook.sub_process.returncode
            if code in RETRY_EXIT_CODES:
                raise
            raise AirflowFailException(f"dplogs exited {code}: not retryable, see the task log") from exc


with DAG(
    dag_id="dplogs_nightly_report",
    schedule="15 2 * * *",
    start_date=dt.datetime(2026, 1, 1),
    catchup=False,  # dplogs --catch-up releases the missed periods itself, under idempotency keys
    max_active_runs=1,
) as dag:
    DplogsReportOperator(
        task_id="report",
        bash_command=BASH_COMMAND,
        env=ENV,
        append_env=True,
        retries=6,
        retry_delay=dt.timedelta(minutes=10),
    )
