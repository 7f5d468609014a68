"""Every method, over real HTTP, gives the known answer on models trained here."""

from __future__ import annotations

import numpy as np

from glassbox.local import LocalDeployment
from glassbox_testing.dataplane import FaultProxy, explain, pretty, tabular_data

Tabular = tuple[LocalDeployment, FaultProxy]


def test_the_anchor_holds_the_decisive_feature(tabular: Tabular) -> None:
    url = tabular[0].urls()["explain"]
    for row in ([0.9, 0.2, 0.5, 0.7, 0.1], [0.1, 0.8, 0.3, 0.2, 0.9]):
        response = explain(url, [row], "anchors")
        assert response.status_code == 200, pretty(response)
        answer = response.json()
        assert any(condition.startswith("f0 ") for condition in answer["data"]["anchor"]), answer["data"]["anchor"]
        assert answer["data"]["precision"] >= 0.9
        assert answer["meta"]["name"] == "AnchorTabular"
        assert answer["summary"][0].startswith("IF ") and "THEN class" in answer["summary"][0]


def test_kernel_shap_ranks_the_decisive_feature_first(tabular: Tabular) -> None:
    rows = [[0.9, 0.2, 0.5, 0.7, 0.1], [0.05, 0.6, 0.9, 0.3, 0.4], [0.7, 0.9, 0.1, 0.1, 0.8]]
    response = explain(tabular[0].urls()["explain"], rows, "shap")
    assert response.status_code == 200, pretty(response)
    data = response.json()["data"]
    predicted = np.asarray(data["raw"]["prediction"])
    for row, k in enumerate(predicted):
        values = np.abs(np.asarray(data["shap_values"][k])[row])
        assert values.argmax() == 0, values


def test_integrated_gradients_is_complete(tabular: Tabular) -> None:
    rows = [[0.9, 0.2, 0.5, 0.7, 0.1], [0.8, 0.6, 0.9, 0.3, 0.4]]
    response = explain(tabular[0].urls()["explain"], rows, "ig")
    assert response.status_code == 200, pretty(response)
    data = response.json()["data"]
    sums = np.asarray(data["attributions"][0]).sum(axis=1)
    differences = np.asarray(data["output_differences"])
    assert np.all(np.abs(differences) > 0.1), "the test needs inputs whose output differs from the baseline's"
    np.testing.assert_allclose(sums, differences, rtol=0.01)
    assert np.abs(np.asarray(data["attributions"][0])).argmax(axis=1).tolist() == [0, 0]


def test_every_counterfactual_changes_the_class(tabular: Tabular) -> None:
    X, _ = tabular_data(rows=10, seed=7)
    response = explain(tabular[0].urls()["explain"], X.tolist(), "counterfactual")
    assert response.status_code == 200, pretty(response)
    data = response.json()["data"]
    before = np.asarray(data["orig"]["class"]).reshape(-1)
    after = np.asarray(data["cf"]["class"]).reshape(-1)
    assert len(before) == 10
    assert np.all(before != after), list(zip(before, after, strict=True))
    # The predictor agrees: it scores the counterfactuals as the other class.
    counterfactuals = np.asarray(data["cf"]["X"])
    assert np.all((counterfactuals[:, 0] > 0.5) == (after == 1))
    # Minimal: the label depends on f0 alone, and f0 is what changed (another feature only where the move
    # into the target class's distribution asked for it, and then not for most rows).
    assert all("f0" in changed for changed in data["changed_features"]), data["changed_features"]
    assert np.median([len(changed) for changed in data["changed_features"]]) == 1, data["changed_features"]


def test_influence_finds_the_near_duplicate(tabular_folder: object, tabular: Tabular) -> None:
    X, _ = tabular_data()
    rng = np.random.default_rng(3)
    for index in (11, 123, 321):
        near_duplicate = X[index] + rng.normal(0, 1e-4, size=X.shape[1])
        response = explain(tabular[0].urls()["explain"], [near_duplicate.tolist()], "influence")
        assert response.status_code == 200, pretty(response)
        ordered = response.json()["data"]["ordered_indices"][0]
        assert index in ordered[:3], (index, ordered)


def test_the_text_anchor_names_the_decisive_word(text: LocalDeployment) -> None:
    response = explain(
        text.urls()["explain"], ["the acting was excellent and the music quite rather very"], "anchors", picture=True
    )
    assert response.status_code == 200, pretty(response)
    answer = response.json()
    assert answer["data"]["anchor"] == ["excellent"]
    assert answer["summary"][0].startswith("IF the text contains 'excellent' THEN class 1")
    assert answer["picture"]["content_type"] == "image/png"


def test_the_image_anchor_covers_the_decisive_square(image: LocalDeployment) -> None:
    picture = np.random.default_rng(5).uniform(0, 0.3, size=(16, 16, 1))
    picture[:6, :6, :] += 0.7
    response = explain(image.urls()["explain"], [picture.tolist()], "anchors")
    assert response.status_code == 200, pretty(response)
    data = response.json()["data"]
    segments = np.asarray(data["segments"])
    mask = np.isin(segments, data["raw"]["feature"])
    # The anchored superpixels cover most of the bright square and little else.
    assert mask[:6, :6].mean() > 0.5, mask.astype(int)
    assert mask[8:, 8:].mean() < 0.5


def test_image_integrated_gradients_point_at_the_square(image: LocalDeployment) -> None:
    picture = np.random.default_rng(6).uniform(0, 0.3, size=(16, 16, 1))
    picture[:6, :6, :] += 0.7
    response = explain(image.urls()["explain"], [picture.tolist()], "ig", picture=True)
    assert response.status_code == 200, pretty(response)
    attributions = np.abs(np.asarray(response.json()["data"]["attributions"][0][0]))[..., 0]
    assert attributions[:6, :6].sum() > attributions.sum() / 2
