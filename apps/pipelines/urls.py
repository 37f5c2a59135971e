from django.urls import path

from . import views

app_name = "pipelines"
urlpatterns = [
    path("<slug:slug>/pipelines/", views.pipeline_list, name="pipelines"),
    path("<slug:slug>/pipelines/<str:name>/run/", views.pipeline_run, name="pipeline-run"),
    path("<slug:slug>/schedules/<int:pk>/pause/", views.schedule_pause, name="schedule-pause"),
    path("<slug:slug>/runs/new/", views.run_trigger, name="run-trigger"),
    path("<slug:slug>/runs/<int:number>/rerun/", views.run_rerun, name="run-rerun"),
    path("<slug:slug>/runs/<int:number>/jobs/<str:job>/retry/", views.job_retry, name="job-retry"),
    path(
        "<slug:slug>/runs/<int:number>/jobs/<str:job>/artifacts/<path:path>",
        views.artifact_download,
        name="artifact",
    ),
    path("<slug:slug>/runs/<int:number>/", views.run_detail, name="run"),
    path("<slug:slug>/runs/<int:number>/cancel/", views.run_cancel, name="run-cancel"),
    path("<slug:slug>/runs/<int:number>/jobs/<str:job>/", views.job_detail, name="job"),
    path("<slug:slug>/runs/<int:number>/jobs/<str:job>/tail/", views.job_log_tail, name="job-tail"),
    path(
        "<slug:slug>/runs/<int:number>/jobs/<str:job>/log/", views.job_log_download, name="job-log"
    ),
]
