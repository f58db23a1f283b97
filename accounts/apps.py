from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    # allauth's app (email addresses) is labelled "Accounts" in the admin index too.
    verbose_name = "Users"

    def ready(self):
        from accounts import checks  # noqa: F401
