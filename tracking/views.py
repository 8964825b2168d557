"""Reports: the list of sent campaigns, and each campaign's report (with CSV exports)."""

import csv

from django.core.paginator import Paginator
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from accounts.scoping import WorkspaceRequest, workspace_view
from campaigns.selectors import campaign_get
from tracking import selectors

REPORTS_PER_PAGE = 25
# A spreadsheet runs a cell starting with one of these as a formula (CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@workspace_view()
@require_GET
def reports(request: WorkspaceRequest) -> HttpResponse:
    campaigns = selectors.report_campaign_list(workspace=request.workspace)
    page = Paginator(campaigns, REPORTS_PER_PAGE).get_page(request.GET.get("page"))
    headlines = selectors.report_headlines(workspace=request.workspace, campaigns=page.object_list)
    rows = [(campaign, headlines.get(campaign.pk)) for campaign in page.object_list]
    return render(request, "tracking/reports.html", {"page": page, "rows": rows})


@workspace_view()
@require_GET
def campaign_report(request: WorkspaceRequest, campaign_id: int) -> HttpResponse:
    campaign = campaign_get(workspace=request.workspace, campaign_id=campaign_id)
    report = selectors.campaign_report(
        campaign=campaign, now=timezone.now(), time_zone=request.workspace.time_zone
    )
    if request.GET.get("format") == "csv":
        table = request.GET.get("table", "summary")
        if table not in selectors.REPORT_TABLES:
            raise Http404("No such table.")
        header, rows = selectors.report_table(report=report, table=table)
        return _csv_response(f"campaign-{campaign.pk}-{table}.csv", header, rows)
    return render(
        request,
        "tracking/campaign_report.html",
        {"campaign": campaign, "report": report, "tables": selectors.REPORT_TABLES},
    )


def csv_cell(value):
    """A cell as a spreadsheet shows it, never run: text starting like a formula gets a
    leading apostrophe."""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def _csv_response(filename: str, header: list[str], rows: list[list]) -> HttpResponse:
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    writer = csv.writer(response)
    writer.writerow(header)
    writer.writerows([csv_cell(value) for value in row] for row in rows)
    return response
