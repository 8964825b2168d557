import factory
from django.utils import timezone

from accounts.models import Invitation, Membership, Role, User, Workspace

TEST_PASSWORD = "correct horse battery staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    full_name = factory.Faker("name")
    password = factory.PostGenerationMethodCall("set_password", TEST_PASSWORD)

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class WorkspaceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Workspace

    name = factory.Sequence(lambda n: f"Workspace {n}")
    slug = factory.Sequence(lambda n: f"workspace-{n}")
    postal_address = "1 Test Street\nTestville"
    time_zone = "Europe/Berlin"
    status = Workspace.Status.ACTIVE
    status_changed_at = factory.LazyFunction(timezone.now)


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    workspace = factory.SubFactory(WorkspaceFactory)
    user = factory.SubFactory(UserFactory)
    role = Role.OWNER


class InvitationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Invitation

    workspace = factory.SubFactory(WorkspaceFactory)
    email = factory.Sequence(lambda n: f"invitee{n}@example.com")
    role = Role.EDITOR


class ContactFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "contacts.Contact"

    workspace = factory.SubFactory(WorkspaceFactory)
    email = factory.Sequence(lambda n: f"contact{n}@example.org")
    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")


class ContactListFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "contacts.ContactList"

    workspace = factory.SubFactory(WorkspaceFactory)
    name = factory.Sequence(lambda n: f"List {n}")
    opt_in = "single"


class FieldFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "contacts.Field"

    workspace = factory.SubFactory(WorkspaceFactory)
    key = factory.Sequence(lambda n: f"field_{n}")
    label = factory.Sequence(lambda n: f"Field {n}")
    type = "text"


class SubscriptionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "contacts.Subscription"

    contact = factory.SubFactory(ContactFactory)
    contact_list = factory.SubFactory(
        ContactListFactory, workspace=factory.SelfAttribute("..contact.workspace")
    )
    workspace = factory.SelfAttribute("contact.workspace")
    status = "subscribed"
