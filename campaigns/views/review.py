"""Not built yet: replaced by its own change."""

from django.http import Http404


def campaign_review(request, *args, **kwargs):
    raise Http404("Not built yet.")


def campaign_test_send(request, *args, **kwargs):
    raise Http404("Not built yet.")


def campaign_schedule(request, *args, **kwargs):
    raise Http404("Not built yet.")


def campaign_unschedule(request, *args, **kwargs):
    raise Http404("Not built yet.")


def campaign_cancel(request, *args, **kwargs):
    raise Http404("Not built yet.")
