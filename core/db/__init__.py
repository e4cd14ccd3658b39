"""Database backends: django-prometheus's, with its per-connect costs taken out."""
