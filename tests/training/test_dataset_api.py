"""Dataset pages and API: a viewer reads and downloads; a non-member sees nothing (404)."""

import pytest

from apps.training import datafiles
from apps.training.services import dataset_version_record

from ..factories import UserFactory

pytestmark = pytest.mark.django_db

CSV = "id,plan\n1,basic\n2,pro\n3,basic\n4,pro\n"


@pytest.fixture
def versions(project, tmp_path, settings):
    """features v1 (real) and v2 (synthetic), recorded from real stored files."""
    made = []
    for i, (text, synthetic) in enumerate([(CSV, False), (CSV + "5,team\n", True)]):
        path = tmp_path / f"f{i}.csv"
        path.write_text(text)
        description = datafiles.describe(path)
        stored = datafiles.store(path, settings.DATASET_DIR)
        made.append(
            dataset_version_record(
                project=project,
                name="features",
                description=description.to_dict(),
                path=str(stored),
                synthetic=synthetic,
            )
        )
    return made


def test_a_viewer_lists_datasets_and_versions_and_downloads_a_file(
    project, member, api, versions, django_assert_max_num_queries
):
    client = api(member("viewer"))
    listed = client.get("/api/v1/datasets/", {"project": project.slug}).json()["results"]
    assert [(d["name"], d["version_count"]) for d in listed] == [("features", 2)]
    latest = listed[0]["latest"]
    assert (latest["version"], latest["rows"], latest["synthetic"]) == (2, 5, True)
    assert latest["columns"] == [
        {"name": "id", "type": "integer"},
        {"name": "plan", "type": "string"},
    ]

    page = client.get("/api/v1/dataset-versions/", {"project": project.slug, "name": "features"})
    assert [v["version"] for v in page.json()["results"]] == [2, 1]
    v1 = client.get(f"/api/v1/dataset-versions/{versions[0].pk}/").json()
    assert v1["fingerprint"] == versions[0].fingerprint and v1["synthetic"] is False
    download = client.get(v1["download_url"])
    assert download.status_code == 200
    assert b"".join(download.streaming_content).decode() == CSV
    assert "features-v1.csv" in download["Content-Disposition"]

    for i in range(6):  # more datasets and versions: the same number of queries
        dataset_version_record(
            project=project,
            name=f"extra-{i}",
            description={**v1, "fingerprint": f"{i:064x}"},
            path=versions[0].path,
        )
    for url in ("/api/v1/datasets/", "/api/v1/dataset-versions/"):
        with django_assert_max_num_queries(6):
            assert len(client.get(url).json()["results"]) >= 7


def test_a_non_member_gets_404_and_an_empty_list(project, api, versions):
    client = api(UserFactory(username="outsider"))
    assert client.get("/api/v1/datasets/").json()["results"] == []
    assert client.get("/api/v1/dataset-versions/").json()["results"] == []
    dataset_id = versions[0].dataset_id
    assert client.get(f"/api/v1/datasets/{dataset_id}/").status_code == 404
    assert client.get(f"/api/v1/dataset-versions/{versions[0].pk}/").status_code == 404
    assert client.get(f"/api/v1/dataset-versions/{versions[0].pk}/download/").status_code == 404
    assert api().get("/api/v1/datasets/").status_code in (401, 403)


def test_dataset_pages_for_a_viewer_and_404_for_a_non_member(
    client, project, member, versions, django_assert_max_num_queries
):
    client.force_login(member("viewer"))
    page = client.get(f"/p/{project.slug}/datasets/").content.decode()
    assert 'href="/p/churn-model/datasets/features/"' in page
    assert "synthetic" in page
    with django_assert_max_num_queries(12):
        detail = client.get(f"/p/{project.slug}/datasets/features/").content.decode()
    assert versions[0].fingerprint in detail and versions[1].fingerprint in detail
    assert '<span class="mono">plan</span> <span class="muted">string</span>' in detail
    download = client.get(f"/p/{project.slug}/datasets/features/v1/download/")
    assert b"".join(download.streaming_content).decode() == CSV
    assert "datasets" in client.get(project.get_absolute_url()).content.decode()

    client.force_login(UserFactory(username="outsider"))
    for url in (
        f"/p/{project.slug}/datasets/",
        f"/p/{project.slug}/datasets/features/",
        f"/p/{project.slug}/datasets/features/v1/download/",
    ):
        assert client.get(url).status_code == 404, url
