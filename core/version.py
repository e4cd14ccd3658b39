"""Versions, written once: the platform's (pyproject.toml reads it from here) and the REST API's."""

VERSION = "0.1.0"
# The REST contract (/api/v1/); changes only when the API breaks compatibility.
API_VERSION = "1.0.0"
