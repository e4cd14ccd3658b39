"""Messages are built only for requests that use them, and work as before for those."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib import messages
from django.contrib.sessions.middleware import SessionMiddleware
from django.http import HttpRequest, HttpResponse
from django.test import Client, RequestFactory
from django.utils.functional import SimpleLazyObject, empty

from core import messages as lazy_messages

pytestmark = pytest.mark.django_db


def _spy(monkeypatch: pytest.MonkeyPatch) -> list[HttpRequest]:
    built: list[HttpRequest] = []
    real = lazy_messages.default_storage

    def counting(request: HttpRequest) -> Any:
        built.append(request)
        return real(request)

    monkeypatch.setattr(lazy_messages, "default_storage", counting)
    return built


def test_an_api_request_builds_no_message_storage(token: Any) -> None:
    api = Client(HTTP_AUTHORIZATION=f"Bearer {token.raw}").get("/api/v1/me")
    assert api.status_code == 200
    storage = api.wsgi_request.__dict__["_messages"]
    assert isinstance(storage, SimpleLazyObject) and storage._wrapped is empty
    assert "messages" not in api.cookies


def _through_middleware(view: Any, request: HttpRequest) -> HttpResponse:
    def session_then_messages(req: HttpRequest) -> Any:
        return lazy_messages.LazyMessageMiddleware(view)(req)

    response = SessionMiddleware(session_then_messages)(request)
    assert isinstance(response, HttpResponse)
    return response


def test_a_message_added_by_a_view_is_stored_and_shown_next(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built = _spy(monkeypatch)

    def adds(request: HttpRequest) -> HttpResponse:
        messages.success(request, "Saved the file.")
        return HttpResponse("ok")

    first = _through_middleware(adds, RequestFactory().post("/"))
    assert len(built) == 1
    follow = RequestFactory().get("/")
    follow.COOKIES.update({k: v.value for k, v in first.cookies.items()})

    def shows(request: HttpRequest) -> HttpResponse:
        return HttpResponse("|".join(str(m) for m in messages.get_messages(request)))

    second = _through_middleware(shows, follow)
    assert second.content == b"Saved the file."
    # Shown once: the storage that showed it clears it for the request after.
    third_request = RequestFactory().get("/")
    third_request.COOKIES.update({k: v.value for k, v in second.cookies.items()})
    assert _through_middleware(shows, third_request).content == b""
