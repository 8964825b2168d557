"""Not built yet: replaced by its own change."""

from django.http import Http404


def campaign_audience(request, *args, **kwargs):
    raise Http404("Not built yet.")
