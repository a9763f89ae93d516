from django.contrib import admin

from apitokens.models import ApiToken


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """List and revoke (delete) tokens; new ones only with `manage.py create_api_token` (shown once)."""

    list_display = ("prefix", "user", "created")
    search_fields = ("user__username", "prefix")
    readonly_fields = ("user", "prefix", "key_hash", "created")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
