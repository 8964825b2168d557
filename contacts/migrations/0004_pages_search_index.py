import django.contrib.postgres.indexes
import django.db.models.functions.text
from django.contrib.postgres.operations import TrigramExtension
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("contacts", "0003_import_rejections"),
    ]

    operations = [
        TrigramExtension(),
        migrations.AddIndex(
            model_name="contact",
            index=django.contrib.postgres.indexes.GinIndex(
                django.contrib.postgres.indexes.OpClass(
                    django.db.models.functions.text.Lower(
                        django.db.models.functions.text.Concat(
                            "email",
                            django.db.models.Value(" "),
                            "first_name",
                            django.db.models.Value(" "),
                            "last_name",
                        )
                    ),
                    name="gin_trgm_ops",
                ),
                name="contacts_search_trgm_idx",
            ),
        ),
    ]
