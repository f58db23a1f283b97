"""``{% url %}`` with the reversed URLs remembered (a template builtin: see settings).

Django's ``reverse()`` costs 20 to 70 µs a call (the resolver matches its patterns each
time) and a page renders 10 to 20 of them; for the same view name, arguments and resolver
the URL is always the same. URLs of string and integer arguments (slugs, ids) are
remembered; anything else, and ``{% url ... as var %}``, goes to Django's own tag.
"""

from functools import lru_cache

from django import template
from django.template.defaulttags import URLNode
from django.template.defaulttags import url as django_url
from django.urls import get_resolver, get_script_prefix, get_urlconf, reverse
from django.utils.html import conditional_escape

register = template.Library()


@lru_cache(maxsize=8192)
def _reverse(view_name, args, kwargs, current_app, script_prefix, resolver) -> str:
    # script_prefix and resolver key the cache only: reverse() reads them itself, and a
    # test's changed URL configuration comes with a new resolver.
    return reverse(view_name, args=args, kwargs=dict(kwargs), current_app=current_app)


def _current_app(context) -> str | None:
    # As Django's tag finds it.
    try:
        return context.request.current_app
    except AttributeError:
        try:
            return context.request.resolver_match.namespace
        except AttributeError:
            return None


class CachedURLNode(URLNode):
    def render(self, context):
        if self.asvar:
            return super().render(context)
        args = tuple(arg.resolve(context) for arg in self.args)
        kwargs = tuple(sorted((k, v.resolve(context)) for k, v in self.kwargs.items()))
        values = (*args, *(v for _, v in kwargs))
        # Not bool: True and 1 are one key, and reverse() writes them differently.
        if not all(isinstance(v, str) or type(v) is int for v in values):
            return super().render(context)
        url = _reverse(
            self.view_name.resolve(context),
            args,
            kwargs,
            _current_app(context),
            get_script_prefix(),
            get_resolver(get_urlconf()),
        )
        return conditional_escape(url) if context.autoescape else url


@register.tag
def url(parser, token):
    node = django_url(parser, token)
    return CachedURLNode(node.view_name, node.args, node.kwargs, node.asvar)
