from django.conf import settings
from django.core import checks


@checks.register(checks.Tags.security, deploy=True)
def check_verification_emails_are_sent(app_configs=None, **kwargs):
    """Mandatory verification with emails written to files: nobody new could ever sign in.

    A deploy check rather than a start-up failure: a scratch copy (the restore drill in
    docs/operations.md) runs without SMTP on purpose, so it emails no real user.
    """
    if settings.EMAIL_HOST or settings.ACCOUNT_EMAIL_VERIFICATION != "mandatory":
        return []
    return [
        checks.Error(
            "EMAIL_HOST is unset, so emails are written to files under IOFOLD_VAR_DIR and "
            "new users never receive the link that ACCOUNT_EMAIL_VERIFICATION=mandatory "
            "requires before they can sign in.",
            hint="Set EMAIL_HOST (and EMAIL_HOST_USER, EMAIL_HOST_PASSWORD), or set "
            "ACCOUNT_EMAIL_VERIFICATION=optional or none.",
            id="accounts.E001",
        )
    ]
