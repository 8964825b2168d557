import re

from django.views.debug import SafeExceptionReporterFilter


class SecretsHidingReporterFilter(SafeExceptionReporterFilter):
    """Django's filter, also hiding settings whose values are URLs that may carry passwords."""

    hidden_settings = re.compile(
        "API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|_URL$|DATABASES|CACHES",
        flags=re.IGNORECASE,
    )
