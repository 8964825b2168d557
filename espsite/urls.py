from django.contrib import admin
from django.urls import include, path

from accounts.views.workspaces import home
from espsite.views import healthz
from sending.webhooks import anymail_urlpatterns

urlpatterns = [
    path("", home, name="home"),
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    # ESP event webhooks (anymail: basic auth and the ESP's signature, no session or CSRF).
    path("webhooks/anymail/", include(anymail_urlpatterns())),
    path("", include("accounts.urls")),
    path("", include("contacts.public_urls")),
    path("", include("compliance.urls")),
    path("", include("campaigns.public_urls")),
    path("w/<slug:workspace_slug>/contacts/", include("contacts.urls")),
    path("w/<slug:workspace_slug>/compliance/", include("compliance.workspace_urls")),
    path("w/<slug:workspace_slug>/campaigns/", include("campaigns.urls")),
    path("w/<slug:workspace_slug>/sending/", include("sending.urls")),
    path("w/<slug:workspace_slug>/reports/", include("tracking.urls")),
]
