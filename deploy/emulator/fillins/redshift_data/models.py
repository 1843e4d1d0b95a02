"""Behaviour of the Redshift Data API fill-in: the statements run at once (FINISHED or FAILED, with
the error as Redshift words it) against the COPY JOBs each cluster's database holds.

It runs only the SQL this project sends, parsed strictly, and fails any other statement saying so:
  COPY <table> FROM 's3://...' IAM_ROLE '<arn>' <options> JOB CREATE <name> [AUTO ON|OFF]
  COPY JOB DROP <name>
  SELECT <columns or *> FROM sys_copy_job [WHERE job_name = '<name>']
What Redshift refuses, it refuses too: a job name with a hyphen, MAXERROR, IGNOREALLERRORS or a
manifest in a COPY JOB, a COPY JOB without IAM_ROLE or with a role the cluster does not have, a job
name taken, dropping a job that does not exist, a database or user the cluster does not have.
SYS_COPY_JOB has the documented columns (job_id, job_name, iam_role, job_text, is_auto); job_text is
character(256), so a long COPY command comes back cut to 256 characters, as on Redshift.
"""

from __future__ import annotations

import itertools
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from deploy.emulator.fillins.core import FillinBackends

COPY_JOB_CREATE = re.compile(
    r"^\s*(?P<copy>COPY\s+(?P<table>[\w.\"]+)\s+FROM\s+'(?P<source>[^']*)'\s*(?P<options>.*?))"
    r"\s+JOB\s+CREATE\s+(?P<job>\S+?)(?:\s+AUTO\s+(?P<auto>ON|OFF))?\s*;?\s*$",
    re.IGNORECASE | re.DOTALL,
)
COPY_JOB_DROP = re.compile(r"^\s*COPY\s+JOB\s+DROP\s+(?P<job>\S+?)\s*;?\s*$", re.IGNORECASE)
SELECT_COPY_JOBS = re.compile(
    r"^\s*SELECT\s+(?P<columns>.+?)\s+FROM\s+(?:pg_catalog\.)?sys_copy_job"
    r"(?:\s+WHERE\s+job_name\s*=\s*'(?P<job>[^']*)')?\s*;?\s*$",
    re.IGNORECASE | re.DOTALL,
)
IAM_ROLE = re.compile(r"\bIAM_ROLE\s+'(?P<role>[^']*)'", re.IGNORECASE)
REFUSED_OPTIONS = re.compile(r"\b(MAXERROR|IGNOREALLERRORS|MANIFEST)\b", re.IGNORECASE)
# SYS_COPY_JOB's documented columns, with their Data API types.
COPY_JOB_COLUMNS = {
    "job_id": "int8",
    "job_name": "bpchar",
    "iam_role": "bpchar",
    "job_text": "bpchar",
    "is_auto": "int4",
}
JOB_TEXT_LENGTH = 256


class DataApiError(Exception):
    """An error answer of the Data API (JSON protocol): AWS's code and message."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


class SqlError(Exception):
    """The statement ran and failed: its message becomes the statement's Error."""


@dataclass
class CopyJob:
    job_id: int
    name: str
    iam_role: str
    copy: str
    auto: bool

    def row(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "job_name": self.name,
            "iam_role": self.iam_role,
            "job_text": self.copy[:JOB_TEXT_LENGTH],
            "is_auto": int(self.auto),
        }


@dataclass
class Statement:
    id: str
    sql: str
    cluster: str
    database: str
    db_user: str
    secret_arn: str
    name: str
    created: float = field(default_factory=time.time)
    status: str = "SUBMITTED"
    error: str = ""
    columns: list[str] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    has_result_set: bool = False

    def describe(self) -> dict[str, Any]:
        described = {
            "Id": self.id,
            "ClusterIdentifier": self.cluster,
            "Database": self.database,
            "DbUser": self.db_user,
            "CreatedAt": self.created,
            "UpdatedAt": self.created,
            "Duration": 0,
            "HasResultSet": self.has_result_set,
            "QueryString": self.sql,
            "ResultRows": len(self.rows) if self.has_result_set else -1,
            "ResultSize": 0,
            "Status": self.status,
        }
        if self.secret_arn:
            described["SecretArn"] = self.secret_arn
        if self.error:
            described["Error"] = self.error
        return described

    def listed(self) -> dict[str, Any]:
        listed = {
            "Id": self.id,
            "QueryString": self.sql,
            "Status": self.status,
            "CreatedAt": self.created,
            "UpdatedAt": self.created,
            "IsBatchStatement": False,
        }
        if self.name:
            listed["StatementName"] = self.name
        return listed


def _cluster(account_id: str, region: str, identifier: str) -> Any | None:
    from moto.redshift.models import redshift_backends

    return redshift_backends[account_id][region].clusters.get(identifier)


class DataFillin:
    """The statements of one account and region, and the COPY JOBs of each cluster's databases."""

    def __init__(self, account_id: str, region: str) -> None:
        self.account_id, self.region = account_id, region
        self.statements: dict[str, Statement] = {}
        self.jobs: dict[tuple[str, str], dict[str, CopyJob]] = {}
        self._job_ids = itertools.count(100001)

    def execute_statement(self, params: dict[str, Any]) -> Statement:
        sql, cluster_id = params.get("Sql"), params.get("ClusterIdentifier")
        if not sql:
            raise DataApiError("ValidationException", "Sql is required.")
        if not cluster_id:
            raise DataApiError("ValidationException", "ClusterIdentifier or WorkgroupName is required.")
        if not (params.get("DbUser") or params.get("SecretArn")):
            raise DataApiError("ValidationException", "Either DbUser or SecretArn is required for a cluster.")
        if not params.get("Database"):
            raise DataApiError("ValidationException", "Database is required.")
        cluster = _cluster(self.account_id, self.region, cluster_id)
        if cluster is None:
            raise DataApiError("ValidationException", "Redshift endpoint doesn't exist in this region.")
        statement = Statement(
            str(uuid.uuid4()),
            sql,
            cluster_id,
            params["Database"],
            params.get("DbUser") or "",
            params.get("SecretArn") or "",
            params.get("StatementName") or "",
        )
        self.statements[statement.id] = statement
        try:
            self._run(statement, cluster)
            statement.status = "FINISHED"
        except SqlError as error:
            statement.status, statement.error = "FAILED", f"ERROR: {error}"
        return statement

    def _run(self, statement: Statement, cluster: Any) -> None:
        if cluster.status != "available":
            raise SqlError(f"cluster {cluster.cluster_identifier} is {cluster.status}")
        if statement.database != cluster.db_name:
            raise SqlError(f'database "{statement.database}" does not exist')
        if statement.db_user and statement.db_user != cluster.master_username:
            raise SqlError(f'user "{statement.db_user}" does not exist')
        jobs = self.jobs.setdefault((cluster.cluster_identifier, cluster.db_name), {})
        if created := COPY_JOB_CREATE.match(statement.sql):
            self._create_job(jobs, created, cluster)
        elif dropped := COPY_JOB_DROP.match(statement.sql):
            if jobs.pop(dropped["job"].lower(), None) is None:
                raise SqlError(f'Copy Job "{dropped["job"]}" does not exist')
        elif selected := SELECT_COPY_JOBS.match(statement.sql):
            self._select_jobs(statement, jobs, selected)
        else:
            raise SqlError(
                "the emulator runs only COPY ... JOB CREATE, COPY JOB DROP and SELECT ... FROM sys_copy_job"
            )

    def _create_job(self, jobs: dict[str, CopyJob], created: re.Match[str], cluster: Any) -> None:
        name, options = created["job"], created["options"]
        if "-" in name:
            raise SqlError(f'invalid job name "{name}": a COPY JOB name cannot contain a hyphen')
        if not created["source"].lower().startswith("s3://"):
            raise SqlError("a COPY JOB loads only from an Amazon S3 path")
        refused = REFUSED_OPTIONS.search(options)
        if refused:
            raise SqlError(f"{refused.group(1).upper()} is not supported with COPY JOB")
        role = IAM_ROLE.search(options)
        if role is None:
            raise SqlError("COPY JOB needs IAM_ROLE: the cluster's default IAM role is not supported")
        if role["role"] not in cluster.iam_roles_arn:
            raise SqlError(f"User is not authorized to assume IAM Role {role['role']}")
        if name.lower() in jobs:
            raise SqlError(f'Copy Job "{name}" already exists')
        auto = (created["auto"] or "OFF").upper() == "ON"
        jobs[name.lower()] = CopyJob(next(self._job_ids), name, role["role"], created["copy"].strip(), auto)

    def _select_jobs(self, statement: Statement, jobs: dict[str, CopyJob], selected: re.Match[str]) -> None:
        wanted = [c.strip().lower() for c in selected["columns"].split(",")]
        columns = list(COPY_JOB_COLUMNS) if wanted == ["*"] else wanted
        unknown = [c for c in columns if c not in COPY_JOB_COLUMNS]
        if unknown:
            raise SqlError(f'column "{unknown[0]}" does not exist in sys_copy_job')
        rows = [job.row() for job in sorted(jobs.values(), key=lambda j: j.job_id)]
        if selected["job"] is not None:
            rows = [row for row in rows if row["job_name"] == selected["job"]]
        statement.columns = columns
        statement.rows = [{c: row[c] for c in columns} for row in rows]
        statement.has_result_set = True

    def get(self, statement_id: str) -> Statement:
        if statement_id not in self.statements:
            raise DataApiError("ResourceNotFoundException", f"Query {statement_id} does not exist.")
        return self.statements[statement_id]

    def result(self, statement_id: str) -> Statement:
        statement = self.get(statement_id)
        if statement.status != "FINISHED" or not statement.has_result_set:
            message = "Query does not have result. Please check query status with DescribeStatement."
            raise DataApiError("ValidationException", message)
        return statement

    def list_statements(self, params: dict[str, Any]) -> list[Statement]:
        status = params.get("Status") or "FINISHED"  # AWS lists finished statements unless asked
        prefix = params.get("StatementName") or ""
        found = [
            s
            for s in self.statements.values()
            if s.name.startswith(prefix)
            and status in ("ALL", s.status)
            and params.get("ClusterIdentifier") in (None, s.cluster)
            and params.get("Database") in (None, s.database)
        ]
        return sorted(found, key=lambda s: s.created, reverse=True)


fillin_backends: FillinBackends[DataFillin] = FillinBackends(DataFillin)
