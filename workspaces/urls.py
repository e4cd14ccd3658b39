"""Web pages of workspaces and their files, under ``/t/<tenant>/`` (namespace ``web``)."""

from django.urls import path
from django.views.generic import RedirectView

from workspaces import views
from workspaces.environment_templates import views as env_templates
from workspaces.filesystem import views as files
from workspaces.snapshots import views as snapshots

tenant_urlpatterns = [
    path("", RedirectView.as_view(pattern_name="web:workspace_list"), name="tenant_home"),
    path("workspaces/", views.workspace_list, name="workspace_list"),
    path("workspaces/rows", views.workspace_rows, name="workspace_rows"),
    path("workspaces/spawn", views.workspace_spawn, name="workspace_spawn"),
    path("workspaces/<str:ref>/", views.workspace_detail, name="workspace_detail"),
    path("workspaces/<str:ref>/shell", views.workspace_shell, name="workspace_shell"),
    path("workspaces/<str:ref>/status", views.workspace_status, name="workspace_status"),
    path("workspaces/<str:ref>/kill", views.workspace_kill, name="workspace_kill"),
    path("workspaces/<str:ref>/pause", views.workspace_pause, name="workspace_pause"),
    path("workspaces/<str:ref>/resume", views.workspace_resume, name="workspace_resume"),
    path("workspaces/<str:ref>/stats", views.workspace_stats, name="workspace_stats"),
    path("workspaces/<str:ref>/stop", views.workspace_stop, name="workspace_stop"),
    path("workspaces/<str:ref>/start", views.workspace_start, name="workspace_start"),
    path(
        "workspaces/<str:ref>/snapshots", snapshots.workspace_snapshots, name="workspace_snapshots"
    ),
    path("workspaces/<str:ref>/snapshots/take", snapshots.snapshot_take, name="snapshot_take"),
    path("workspaces/<str:ref>/fork", snapshots.workspace_fork, name="workspace_fork"),
    path("templates/", env_templates.template_list, name="template_list"),
    path("templates/new", env_templates.template_create, name="template_create"),
    path("templates/<str:ref>/", env_templates.template_detail, name="template_detail"),
    path("templates/<str:ref>/log", env_templates.template_log, name="template_log"),
    path("templates/<str:ref>/rebuild", env_templates.template_rebuild, name="template_rebuild"),
    path("templates/<str:ref>/delete", env_templates.template_delete, name="template_delete"),
    path("snapshots/<str:snapshot_id>/spawn", snapshots.snapshot_spawn, name="snapshot_spawn"),
    path("snapshots/<str:snapshot_id>/delete", snapshots.snapshot_delete, name="snapshot_delete"),
    path("workspaces/<str:ref>/files/", files.files_browse, name="workspace_files"),
    path("workspaces/<str:ref>/files/view", files.file_view, name="file_view"),
    path("workspaces/<str:ref>/files/download", files.file_download, name="file_download"),
    path("workspaces/<str:ref>/files/archive", files.archive_download, name="archive_download"),
    path("workspaces/<str:ref>/files/upload", files.file_upload, name="file_upload"),
    path("workspaces/<str:ref>/files/mkdir", files.dir_make, name="dir_make"),
    path("workspaces/<str:ref>/files/delete", files.path_delete, name="path_delete"),
]
