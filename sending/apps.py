from django.apps import AppConfig


class SendingConfig(AppConfig):
    name = "sending"
    verbose_name = "Sending"

    def ready(self) -> None:
        from accounts.dashboard import DashboardStep, dashboard_panels, dashboard_steps
        from sending.models import SendingDomain

        dashboard_steps.register(
            DashboardStep(
                order=30,
                key="sending_domain",
                title="Verify a sending domain",
                text="Publish DKIM, SPF and DMARC records so that mailbox providers accept "
                "your mail.",
                url_name="sending:overview",
                action="Set up sending",
                is_done=lambda workspace: (
                    SendingDomain.objects.for_workspace(workspace)
                    .filter(status=SendingDomain.Status.VERIFIED)
                    .exists()
                ),
            )
        )
        dashboard_panels.register("sending:dashboard_panel")

        from anymail.signals import tracking

        from sending.webhooks import tracking_received

        tracking.connect(tracking_received, dispatch_uid="sending.webhooks.tracking_received")

        from campaigns.senders import register_sender_domain_lookup
        from sending.selectors import sending_domain_for_from_address

        register_sender_domain_lookup(sending_domain_for_from_address)

        from campaigns.panels import campaign_panels

        campaign_panels.register("sending:campaign_progress")

        from contacts.timeline import timeline_sources
        from sending.selectors import contact_delivery_timeline

        timeline_sources.register(contact_delivery_timeline)

        from campaigns import outgoing
        from sending.message import campaign_render_bytes

        if campaign_render_bytes not in outgoing.message_renderers:
            outgoing.message_renderers.append(campaign_render_bytes)

        # Kill switches and quotas: no claim while a switch is on or the quota is used up.
        from accounts.provisioning import workspace_provisioners
        from sending.pipeline import claim_limits
        from sending.policy import policy_claim_limit
        from sending.services.policy import sending_policy_create

        if policy_claim_limit not in claim_limits:
            claim_limits.append(policy_claim_limit)
        workspace_provisioners.register(sending_policy_create)

        # The batch circuit breaker: claims stop at the open batch's limit until the batch
        # has been judged.
        from sending import pipeline
        from sending.breaker import breaker_claim_limit

        if breaker_claim_limit not in pipeline.claim_limits:
            pipeline.claim_limits.append(breaker_claim_limit)
