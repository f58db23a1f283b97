from allauth.account.models import EmailAddress


def email_address_status(user, email: str) -> str:
    """Return "verified", "unverified" or "" (not the user's) for one of their addresses."""
    verified = (
        EmailAddress.objects.filter(user=user, email__iexact=email)
        .values_list("verified", flat=True)
        .first()
    )
    if verified is None:
        return ""
    return "verified" if verified else "unverified"


def verified_emails(user) -> list[str]:
    """Return the addresses ``user`` has confirmed, lower-cased."""
    emails = EmailAddress.objects.filter(user=user, verified=True).values_list("email", flat=True)
    return [email.lower() for email in emails]
