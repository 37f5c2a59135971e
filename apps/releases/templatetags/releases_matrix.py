"""What serves where, for pages of apps to the left of releases (the project page).

`projects` may not import `releases` (see docs/architecture.md); its templates ask this tag,
which is a template-level reference, not a Python import.
"""

from django import template

from ..selectors import environment_matrix

register = template.Library()


@register.simple_tag
def environment_cells(project) -> list[dict]:
    """``{% environment_cells project as environments %}``: each of the project's environments
    with the deployment serving it and the promotion waiting for it."""
    return environment_matrix(projects=[project])[0]["environments"]
