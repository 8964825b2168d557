"""Public compliance URLs at the site root: unsubscribe, preference center (and the data
requests made from it). Every one carries a signed token instead of a session."""

from django.urls import path

from compliance.views import gdpr, public

app_name = "compliance"

urlpatterns = [
    # No trailing slash: this exact URL goes into List-Unsubscribe; a redirect would lose
    # the one-click POST.
    path("u/<str:token>", public.unsubscribe, name="unsubscribe"),
    path("p/<str:token>", public.preferences, name="preferences"),
    # GDPR requests of the person (compliance/views/gdpr.py).
    path("p/<str:token>/data/", gdpr.gdpr_request, name="gdpr_request"),
    path("p/data/confirm/<str:token>/", gdpr.gdpr_erasure_confirm, name="gdpr_erasure_confirm"),
]
