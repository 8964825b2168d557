"""Factories for signup form tests (kept here, beside the tests that use them)."""

import factory

from tests.factories import ContactListFactory, WorkspaceFactory


class SignupFormFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "contacts.SignupForm"

    workspace = factory.SubFactory(WorkspaceFactory)
    contact_list = factory.SubFactory(
        ContactListFactory, workspace=factory.SelfAttribute("..workspace"), opt_in="double"
    )
    name = factory.Sequence(lambda n: f"Form {n}")
    title = "Join the Trail Notes newsletter"
    intro = "One email a month with new routes and gear tips."
