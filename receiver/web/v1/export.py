"""GET /v1/export.csv: one row per identity and state in force, streamed."""

import csv
import io
import re

from flask import Response, request, stream_with_context
from marshmallow import RAISE, Schema

from ...access.roles import Permission
from ...ledger import queries
from ...schemas import MAX_TENANT, load, text
from ...services import services
from ..answers import iso
from .common import Since, allow, bp, known_tenant

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_E164 = re.compile(r"\+\d{1,15}")


class ExportQuery(Schema):
    class Meta:
        unknown = RAISE

    tenant = text(1, MAX_TENANT)
    since = Since()


def spreadsheet_safe(cell: str | None) -> str | None:
    """A cell a spreadsheet shows as text: one that would start a formula gets a leading quote (OWASP).

    Phone numbers (``+`` and digits) stay as they are: there is no formula in them to run.
    """
    if cell and cell[0] in _FORMULA_STARTS and not _E164.fullmatch(cell):
        return "'" + cell
    return cell


@bp.get("/export.csv")
@allow(Permission.EXPORT)
def export_csv():
    data = load(ExportQuery(), request.args.to_dict())
    rows = queries.export_rows(services().engine, tenant=known_tenant(data.get("tenant")), since=data.get("since"))

    def generate():
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(("tenant", "identity", "state", "since"))
        for count, (tenant, identity, state, since) in enumerate(rows, start=1):
            writer.writerow([spreadsheet_safe(cell) for cell in (tenant, identity, state, iso(since))])
            if count % 1000 == 0:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    return Response(stream_with_context(generate()), mimetype="text/csv",
                    headers={"Content-Disposition": 'attachment; filename="consent.csv"'})
