"""Wire format of the Redshift Data API fill-in (JSON protocol) and the operations it serves."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from deploy.emulator.fillins.core import FillinResponse, json_error, json_params, json_response
from deploy.emulator.fillins.redshift_data.models import (
    COPY_JOB_COLUMNS,
    DataApiError,
    DataFillin,
    fillin_backends,
)

SERVICE = "redshift-data"


def _field(value: Any) -> dict[str, Any]:
    if value is None:
        return {"isNull": True}
    if isinstance(value, bool):
        return {"booleanValue": value}
    if isinstance(value, int):
        return {"longValue": value}
    return {"stringValue": str(value)}


def _handler(serve: Callable[[DataFillin, dict[str, Any]], dict[str, Any]]) -> Callable[..., FillinResponse]:
    def handle(environ: dict[str, Any], body: bytes) -> FillinResponse:
        backend = fillin_backends.for_request(environ)
        try:
            return json_response(serve(backend, json_params(body)))
        except DataApiError as error:
            return json_error(error.code, error.message, error.status)

    return handle


def execute_statement(backend: DataFillin, params: dict[str, Any]) -> dict[str, Any]:
    statement = backend.execute_statement(params)
    answer = {k: v for k, v in statement.describe().items() if k in ("Id", "ClusterIdentifier", "CreatedAt")}
    return {**answer, "Database": statement.database, "DbUser": statement.db_user}


def describe_statement(backend: DataFillin, params: dict[str, Any]) -> dict[str, Any]:
    return backend.get(params.get("Id", "")).describe()


def get_statement_result(backend: DataFillin, params: dict[str, Any]) -> dict[str, Any]:
    statement = backend.result(params.get("Id", ""))
    return {
        "ColumnMetadata": [
            {"name": c, "label": c, "typeName": COPY_JOB_COLUMNS[c]} for c in statement.columns
        ],
        "Records": [[_field(row[c]) for c in statement.columns] for row in statement.rows],
        "TotalNumRows": len(statement.rows),
    }


def list_statements(backend: DataFillin, params: dict[str, Any]) -> dict[str, Any]:
    return {"Statements": [statement.listed() for statement in backend.list_statements(params)]}


OPERATIONS = {
    "ExecuteStatement": _handler(execute_statement),
    "DescribeStatement": _handler(describe_statement),
    "GetStatementResult": _handler(get_statement_result),
    "ListStatements": _handler(list_statements),
}
