from django.conf import settings


def console(request) -> dict:
    """What every console page shows in its header."""
    return {"loms_environment": settings.ENVIRONMENT, "loms_broker_mode": settings.BROKER_MODE}
