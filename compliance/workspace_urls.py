"""Workspace pages of compliance, under /w/<workspace_slug>/compliance/."""

from django.urls import path

from compliance.views import audit, gdpr

app_name = "compliance_ws"

urlpatterns = [
    path("audit/", audit.audit_log_page, name="audit_log"),
    path("gdpr/", gdpr.gdpr_requests_page, name="gdpr_requests"),
    path("gdpr/new/", gdpr.gdpr_request_create, name="gdpr_request_create"),
    path("gdpr/<int:request_id>/download/", gdpr.gdpr_download, name="gdpr_download"),
]
