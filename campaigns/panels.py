"""Fragments higher apps contribute to a campaign's Review & send tab.

Sending registers its progress panel in its AppConfig.ready(); the tab loads each
registered URL name (kwargs workspace_slug, campaign_id) with hx-get:

    campaign_panels.register("sending:campaign_progress")
"""


class _CampaignPanels:
    def __init__(self):
        self.url_names: list[str] = []

    def register(self, url_name: str) -> None:
        if url_name not in self.url_names:
            self.url_names.append(url_name)


campaign_panels = _CampaignPanels()
