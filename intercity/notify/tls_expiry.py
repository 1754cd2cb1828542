"""Certificates expiring soon, for the top of the digest: what the panel last read from each app's reports."""
from __future__ import annotations

from intercity.notify.links import external


def expiring_lines() -> list[dict]:
    """One line per app whose certificate expires within 14 days (or has expired), soonest first."""
    from intercity.services.tls import expiring

    lines = []
    for item in expiring():
        left = item["days_left"]
        when = "expired" if left < 0 else f"expires in {left} day{'s' if left != 1 else ''}"
        lines.append({"title": f"{item['server']} / {item['app']}",
                      "sentence": f"{when} ({item['expires']:%Y-%m-%d %H:%M} UTC)"
                                  + ("" if item["source"] == "letsencrypt" else ", uploaded: renew it by hand"),
                      "link": external("apps.show", server_id=item["server_id"], name=item["app"], _anchor="https")})
    return lines
