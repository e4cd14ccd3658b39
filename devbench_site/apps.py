from django.apps import AppConfig


class SiteConfig(AppConfig):
    """The site's wiring as an app, so the embedded mode's beat starts with Django."""

    name = "devbench_site"
    label = "devbench_site"

    def ready(self) -> None:
        # The embedded mode's periodic jobs (TTL expiry, GC, reconciliation): started
        # once, and only in a process that serves requests (see the scheduler).
        from devbench_site import scheduler

        scheduler.maybe_start()
