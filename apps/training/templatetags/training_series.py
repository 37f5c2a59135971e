"""``{% job_series job %}``: the per-step series chart on the job page (pipelines' template asks
training by this tag's name, a string reference with no Python import of training)."""

from django import template

register = template.Library()


@register.inclusion_tag("training/_job_series.html")
def job_series(job):
    from ..views import job_series_context

    return job_series_context(job)
