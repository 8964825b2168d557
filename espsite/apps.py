from django.apps import AppConfig
from django.contrib.admin.apps import AdminConfig


class EspsiteConfig(AppConfig):
    name = "espsite"
    verbose_name = "Platform"


class PlatformAdminConfig(AdminConfig):
    default_site = "espsite.admin.PlatformAdminSite"
