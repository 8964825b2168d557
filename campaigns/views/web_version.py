"""Not built yet: replaced by its own change."""

from django.http import Http404


def web_version(request, *args, **kwargs):
    raise Http404("Not built yet.")
