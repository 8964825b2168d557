"""Not built yet: replaced by its own change."""

from django.http import Http404


def template_list(request, *args, **kwargs):
    raise Http404("Not built yet.")


def template_create(request, *args, **kwargs):
    raise Http404("Not built yet.")


def template_edit(request, *args, **kwargs):
    raise Http404("Not built yet.")


def template_duplicate(request, *args, **kwargs):
    raise Http404("Not built yet.")


def template_version_restore(request, *args, **kwargs):
    raise Http404("Not built yet.")
