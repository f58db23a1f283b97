from django.core.management import call_command


def test_models_and_migrations_agree(db):
    """A model change without its migration fails here (``makemigrations --check``)."""
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)
