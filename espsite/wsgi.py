"""The WSGI entry point (gunicorn espsite.wsgi, runserver): Django, with the tracking
endpoints answered in front of it (tracking/middleware.py)."""

import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "espsite.settings")

django_application = get_wsgi_application()

from tracking.middleware import TrackingWSGI  # noqa: E402 (needs the apps loaded)

application = TrackingWSGI(django_application)

# What loading made lives as long as the process: out of the collector's sight, so that
# the full collections that requests trigger no longer walk Django's modules, models and
# URL patterns each time (the busiest endpoints allocate a few objects per request).
gc.collect()
gc.freeze()
