"""Not built yet: replaced by its own change."""

from django.http import Http404


def image_list(request, *args, **kwargs):
    raise Http404("Not built yet.")


def image_detail(request, *args, **kwargs):
    raise Http404("Not built yet.")


def image_delete(request, *args, **kwargs):
    raise Http404("Not built yet.")
