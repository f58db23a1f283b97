"""Admin helpers that keep operator pages bounded however much data a workspace holds."""

from django.contrib.admin.utils import NestedObjects, quote
from django.db import router
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html
from django.utils.text import capfirst

NAMED = 100  # selected objects named on a delete confirmation; the rest are counted


def changelist_link(model, field: str, obj, count: int) -> str:
    """A link to ``model``'s admin list filtered to the rows whose ``field`` is ``obj``."""
    opts = model._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
    return format_html(
        '<a href="{}?{}__id__exact={}">{} {}</a>',
        url,
        field,
        obj.pk,
        count,
        opts.verbose_name_plural,
    )


class CountedDeletionMixin:
    """Delete confirmations count the rows that go with an object instead of naming each.

    Django's page names every cascaded row, and naming a label or a version reads its
    user or eval set: an eval set with 10,000 labels made a page of 10,000 lines and as
    many queries. The summary of counts per model and the permission check stay.
    """

    def get_deleted_objects(self, objs, request):
        objs = list(objs)
        if not objs:
            return [], {}, set(), []
        collector = NestedObjects(using=router.db_for_write(self.model), origin=objs)
        collector.collect(objs)
        perms_needed = set()
        model_count = {}
        for model, rows in collector.model_objs.items():
            model_count[model._meta.verbose_name_plural] = len(rows)
            if self.admin_site.is_registered(model):
                model_admin = self.admin_site.get_model_admin(model)
                if not model_admin.has_delete_permission(request):
                    perms_needed.add(model._meta.verbose_name)
        named = [self._deleted_name(obj) for obj in objs[:NAMED]]
        if len(objs) > NAMED:
            named.append(f"and {len(objs) - NAMED} more")
        protected = [self._deleted_name(obj) for obj in list(collector.protected)[:NAMED]]
        return named, model_count, perms_needed, protected

    def _deleted_name(self, obj):
        opts = obj._meta
        try:
            url = reverse(
                f"{self.admin_site.name}:{opts.app_label}_{opts.model_name}_change",
                args=[quote(obj.pk)],
            )
        except NoReverseMatch:
            return f"{capfirst(opts.verbose_name)}: {obj}"
        return format_html('{}: <a href="{}">{}</a>', capfirst(opts.verbose_name), url, obj)
