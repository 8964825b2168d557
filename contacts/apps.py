from django.apps import AppConfig


class ContactsConfig(AppConfig):
    name = "contacts"
    verbose_name = "Contacts"

    def ready(self) -> None:
        from accounts.dashboard import DashboardStep, dashboard_steps
        from contacts.models import Contact

        dashboard_steps.register(
            DashboardStep(
                order=40,
                key="contacts",
                title="Bring in your contacts",
                text="Import a CSV with the consent you collected, or add a signup form.",
                url_name="contacts:contact_list",
                action="Go to contacts",
                is_done=lambda workspace: Contact.objects.for_workspace(workspace).exists(),
            )
        )
