"""Web endpoints of execs, under ``/t/<tenant>/`` (namespace ``web``)."""

from django.urls import path

from execution import views

tenant_urlpatterns = [
    path("workspaces/<str:ref>/execs/", views.exec_start, name="exec_start"),
    path("workspaces/<str:ref>/execs/rows", views.exec_rows, name="exec_rows"),
    path("execs/<str:exec_id>/cancel", views.exec_cancel, name="exec_cancel"),
]
