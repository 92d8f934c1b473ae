"""Template helpers of the UI shell: times a browser can show in its own zone, and the controller's liveness.

`when` writes a time in UTC, said so, inside a <time> element; the shell's
script (ui/static/ui/live.js) rewrites the text to the viewer's local time and
keeps UTC in the hover title, so a page without JavaScript is still correct.
"""

from datetime import timezone as dt_timezone

from django import template
from django.utils.html import format_html

register = template.Library()

_FORMATS = {"datetime": "%Y-%m-%d %H:%M:%S", "minute": "%Y-%m-%d %H:%M", "time": "%H:%M:%S"}


@register.filter
def when(value, style: str = "datetime"):
    """`{{ rollout.created_at|when }}`, `|when:"minute"` or `|when:"time"`; '—' for no time."""
    if not value:
        return "—"
    utc = value.astimezone(dt_timezone.utc) if value.tzinfo else value.replace(tzinfo=dt_timezone.utc)
    shown = utc.strftime(_FORMATS.get(style, _FORMATS["datetime"]))
    full = utc.strftime(_FORMATS["datetime"])
    return format_html('<time datetime="{}" data-local="{}" title="{} UTC">{} UTC</time>',
                       utc.strftime("%Y-%m-%dT%H:%M:%SZ"), style, full, shown)


@register.inclusion_tag("ui/_liveness.html")
def controller_liveness():
    """The header's word on the rollout controller: ticking, or for how long nothing has acted."""
    # Imported here: the shell renders for pages of every app, and rollouts is the one that knows.
    from rollouts.liveness import controller_liveness as read

    return {"liveness": read()}
