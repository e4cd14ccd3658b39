"""Django's message middleware, with the storage built only when something uses it.

``MessageMiddleware`` builds a cookie and a session storage (two signers) for every
request; API requests, most of the traffic, never touch messages, and building them
was several per cent of a control read's CPU (bench/README.md). The storage is the
same ``default_storage`` as before, built on first use: a view or template that adds
or shows messages sees no difference, and a request that never touched them has
nothing to store, as with the eager storage.
"""

from __future__ import annotations

from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.messages.storage import default_storage
from django.http import HttpRequest, HttpResponse
from django.utils.functional import SimpleLazyObject, empty


class LazyMessageMiddleware(MessageMiddleware):
    def process_request(self, request: HttpRequest) -> None:
        request._messages = SimpleLazyObject(lambda: default_storage(request))  # type: ignore[attr-defined]

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        messages = request.__dict__.get("_messages")
        if isinstance(messages, SimpleLazyObject) and messages._wrapped is empty:
            return response  # never used: nothing read, nothing added
        result: HttpResponse = super().process_response(request, response)
        return result
