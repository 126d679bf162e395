"""The PyTorch adapter and built-in networks (MC dropout, ensembles, embeddings, checkpoints)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

import exemplar.models
from exemplar.errors import ConfigError, ModelError, SingleClassError
from exemplar.models import ModelAdapter
from exemplar.models.nets import MLP, SmallCNN
from exemplar.models.torch_adapter import (
    NetSpec,
    TorchAdapter,
    TrainingRecipe,
    _validation_split,
    make_torch_model,
    resolve_device,
)

torch.set_num_threads(1)

X_ALL, Y_ALL = load_digits(return_X_y=True)
ORDER = np.random.default_rng(0).permutation(Y_ALL.size)
TRAIN, TEST = ORDER[:300], ORDER[1000:1300]
X, Y = X_ALL[TRAIN], Y_ALL[TRAIN]
X_TEST, Y_TEST = X_ALL[TEST], Y_ALL[TEST]
NAMES = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])

FAST = {"epochs": 5, "lr": 3e-3, "channels": (4, 8), "hidden": 32}


def small_cnn(seed: int = 0, **params: object) -> TorchAdapter:
    return make_torch_model("cnn", seed, **{**FAST, **params})


class BatchNormNet(nn.Module):
    """An MLP with batch norm and dropout, and no ``penultimate`` module."""

    def __init__(self, n_features: int, n_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(n_features, 16)
        self.bn = nn.BatchNorm1d(16)
        self.drop = nn.Dropout(0.5)
        self.out = nn.Linear(16, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.drop(torch.relu(self.bn(self.fc(x)))))


class NoDropoutNet(nn.Module):
    def __init__(self, n_features: int, n_classes: int) -> None:
        super().__init__()
        self.lin = nn.Linear(n_features, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x)


class UnsplitCNN(SmallCNN):
    """SmallCNN without the trunk/top split: MC passes rerun the whole network."""

    forward_trunk = None  # type: ignore[assignment]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return SmallCNN.forward_top(self, SmallCNN.forward_trunk(self, x))


class SubclassDropout(nn.Dropout):
    """Not ``nn.Dropout`` itself, so MC inference switches it to train mode (torch's dropout)."""


class DropoutProbe(nn.Module):
    """Dropout on the input, then a linear layer with two outputs.

    With two classes, ``log(s1 / s0)`` of a softmax sample recovers the logit difference
    ``z = (w1 - w0) · dropout(x) + (b1 - b0)`` exactly, so the tests can read each pass.
    """

    def __init__(self, n_features: int, n_classes: int, p: float = 0.5, subclass: bool = False):
        super().__init__()
        self.drop = (SubclassDropout if subclass else nn.Dropout)(p)
        self.lin = nn.Linear(n_features, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(self.drop(x))


def probe(p: float, *, subclass: bool = False, n_samples: int = 50) -> TorchAdapter:
    """A fitted two-class DropoutProbe on unscaled inputs."""
    model = TorchAdapter(
        lambda f, c: DropoutProbe(f, c, p, subclass),
        TrainingRecipe(epochs=1, seed=3),
        n_samples=n_samples,
        scaling="none",
    )
    two = Y < 2
    return model.fit(X[two], Y[two])


def logit_gap(samples: np.ndarray) -> np.ndarray:
    """``z = log(s1 / s0)`` of two-class softmax outputs, in float64."""
    s = samples.astype(np.float64)
    return np.log(s[..., 1]) - np.log(s[..., 0])


@pytest.fixture(scope="module")
def cnn() -> TorchAdapter:
    return small_cnn().fit(X, Y)


def test_adapter_satisfies_the_protocol_and_the_predictions_contract(cnn: TorchAdapter) -> None:
    assert isinstance(cnn, ModelAdapter)
    pred = cnn.predict(X_TEST, samples=True, embeddings=True)
    assert pred.proba is not None and pred.proba.dtype == np.float32
    assert pred.proba.shape == (len(TEST), 10)
    np.testing.assert_allclose(pred.proba.sum(axis=1), 1.0, atol=1e-5)
    assert pred.samples is not None and pred.samples.dtype == np.float32
    np.testing.assert_allclose(pred.samples.sum(axis=2), 1.0, atol=1e-5)
    assert pred.classes is not None and pred.classes.tolist() == list(range(10))
    np.testing.assert_array_equal(cnn.predict_labels(X_TEST), cnn.classes_[pred.proba.argmax(1)])
    np.testing.assert_array_equal(cnn.predict_proba(X_TEST), pred.proba)


def test_cnn_learns_digits() -> None:
    model = make_torch_model("cnn", 0, epochs=15).fit(X, Y)
    accuracy = (model.predict_labels(X_TEST) == Y_TEST).mean()
    assert accuracy > 0.85  # chance is 0.1


def test_mc_dropout_samples_vary_but_eval_proba_is_deterministic(cnn: TorchAdapter) -> None:
    first = cnn.predict(X_TEST, samples=True)
    second = cnn.predict(X_TEST, samples=True)
    assert first.samples is not None and first.samples.shape == (20, len(TEST), 10)
    assert not np.allclose(first.samples[0], first.samples[1])
    np.testing.assert_array_equal(first.proba, second.proba)
    np.testing.assert_array_equal(first.samples, second.samples)  # seeded, reproducible
    assert not np.allclose(first.samples.mean(axis=0), first.proba, atol=1e-6)


def test_mc_dropout_leaves_batchnorm_in_eval_mode() -> None:
    model = TorchAdapter(BatchNormNet, TrainingRecipe(epochs=2), n_samples=5).fit(X, Y)
    bn = model.nets_[0].bn
    assert isinstance(bn, nn.BatchNorm1d)
    before = {k: v.clone() for k, v in bn.state_dict().items()}
    pred = model.predict(X_TEST, samples=True)
    assert pred.samples is not None and not np.allclose(pred.samples[0], pred.samples[1])
    for key, value in bn.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)
    assert not any(m.training for m in model.nets_[0].modules())


@pytest.mark.parametrize(
    ("p", "subclass"),
    [(0.25, False), (0.5, False), (0.1, False), (0.3, False), (0.25, True)],
)
def test_mc_dropout_drops_each_unit_independently_at_rate_p_and_scales_by_1_over_1_minus_p(
    p: float, subclass: bool
) -> None:
    # 8-bit masks (0.25, 0.5), 32-bit masks (0.1, 0.3), and torch's own dropout (subclass).
    model = probe(p, subclass=subclass)
    lin = model.nets_[0].lin
    with torch.no_grad():  # z = mean of the dropped-out inputs: the kept share / (1 - p)
        lin.weight.zero_()
        lin.weight[1] = 1.0 / X.shape[1]
        lin.bias.zero_()
    ones = np.ones((200, X.shape[1]))
    samples = model.predict(ones, samples=True).samples
    assert samples is not None and samples.shape == (50, 200, 2)
    kept = logit_gap(samples) * (1 - p) * X.shape[1]  # units kept, per pass and row
    np.testing.assert_allclose(kept, np.round(kept), atol=1e-3)  # survivors scaled by 1/(1-p)
    share = kept.mean() / X.shape[1]
    units = kept.size * X.shape[1]
    assert abs(share - (1 - p)) < 5 * np.sqrt(p * (1 - p) / units)
    # Independent across passes and rows: kept counts are uncorrelated (5 standard errors).
    counts = kept - kept.mean()
    assert abs(np.corrcoef(counts[:-1].ravel(), counts[1:].ravel())[0, 1]) < 5 / np.sqrt(
        counts[1:].size
    )
    assert abs(np.corrcoef(counts[:, :-1].ravel(), counts[:, 1:].ravel())[0, 1]) < 5 / np.sqrt(
        counts[:, 1:].size
    )
    drop = model.nets_[0].drop
    assert not drop.training and not drop._forward_hooks  # nothing left switched on


def test_mean_of_mc_passes_is_the_eval_output_for_a_linear_top() -> None:
    # E[dropout(x)] = x, so for a linear top the mean logit over passes is the eval logit.
    model = probe(0.25, n_samples=2000)
    pred = model.predict(X_TEST[:20], samples=True)
    assert pred.samples is not None
    z = logit_gap(pred.samples)
    standard_error = z.std(axis=0) / np.sqrt(z.shape[0])
    gap = np.abs(z.mean(axis=0) - logit_gap(pred.proba))
    assert (standard_error > 0).all() and (gap < 5 * standard_error).all()


def test_trunk_split_gives_the_same_samples_as_full_passes(
    tmp_path: Path, cnn: TorchAdapter
) -> None:
    path = cnn.save(tmp_path / "cnn.pt")
    full = TorchAdapter.load(path, lambda f, c: UnsplitCNN(f, c, channels=(4, 8), hidden=32))
    a = cnn.predict(X_TEST[:50], samples=True).samples
    b = full.predict(X_TEST[:50], samples=True).samples
    assert a is not None and b is not None
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_mc_dropout_needs_dropout_modules() -> None:
    model = TorchAdapter(NoDropoutNet, TrainingRecipe(epochs=1)).fit(X, Y)
    model.predict(X_TEST)  # probabilities alone are fine
    with pytest.raises(ModelError, match="no nn.Dropout"):
        model.predict(X_TEST, samples=True)


def test_ensemble_members_differ_and_proba_is_their_mean() -> None:
    model = small_cnn(uncertainty="ensemble", n_members=3, epochs=2).fit(X, Y)
    assert len(model.nets_) == 3
    pred = model.predict(X_TEST, samples=True)
    assert pred.samples is not None and pred.samples.shape == (3, len(TEST), 10)
    assert not np.allclose(pred.samples[0], pred.samples[1], atol=1e-3)
    assert not np.allclose(pred.samples[1], pred.samples[2], atol=1e-3)
    np.testing.assert_allclose(pred.proba, pred.samples.mean(axis=0), atol=1e-6)
    w0, w1 = (net.state_dict()["conv1.weight"] for net in model.nets_[:2])
    assert not torch.equal(w0, w1)  # each member has its own initialization


def test_default_embeddings_are_the_penultimate_layer(cnn: TorchAdapter) -> None:
    pred = cnn.predict(X_TEST, embeddings=True)
    emb = pred.embeddings
    assert emb is not None and emb.shape == (len(TEST), 32) and emb.dtype == np.float32
    head = cnn.nets_[0].head
    logits = torch.as_tensor(emb) @ head.weight.detach().T + head.bias.detach()
    np.testing.assert_allclose(torch.softmax(logits, 1).numpy(), pred.proba, atol=1e-5)


def test_named_embedding_layer() -> None:
    model = small_cnn(embedding_layer="head", epochs=1).fit(X, Y)
    pred = model.predict(X_TEST, embeddings=True)
    assert pred.embeddings is not None and pred.embeddings.shape == (len(TEST), 10)
    softmax = torch.softmax(torch.as_tensor(pred.embeddings), 1).numpy()
    np.testing.assert_allclose(softmax, pred.proba, atol=1e-5)  # the logits
    conv = small_cnn(embedding_layer="conv2", epochs=1).fit(X, Y)
    emb = conv.predict(X_TEST[:5], embeddings=True).embeddings
    assert emb is not None and emb.shape == (5, 8 * 4 * 4)  # 8 filters on the pooled 4×4 map


def test_embeddings_fall_back_to_the_input_of_the_last_linear() -> None:
    model = TorchAdapter(BatchNormNet, TrainingRecipe(epochs=1)).fit(X, Y)
    emb = model.predict(X_TEST, embeddings=True).embeddings
    assert emb is not None and emb.shape == (len(TEST), 16)
    assert (emb >= 0).all()  # after the ReLU


def test_unknown_embedding_layer_is_a_clear_error(cnn: TorchAdapter) -> None:
    with pytest.raises(ModelError, match="no layer named 'nope'.*conv1"):
        small_cnn(embedding_layer="nope").fit(X, Y)


def test_predictions_do_not_depend_on_chunking(cnn: TorchAdapter) -> None:
    whole = cnn.predict(X_TEST, embeddings=True)
    defaults = cnn.chunk_size, cnn.predict_batch_size
    cnn.chunk_size, cnn.predict_batch_size = 23, 7
    try:
        chunked = cnn.predict(X_TEST, embeddings=True)
    finally:
        cnn.chunk_size, cnn.predict_batch_size = defaults
    np.testing.assert_allclose(chunked.proba, whole.proba, atol=1e-6)
    np.testing.assert_allclose(chunked.embeddings, whole.embeddings, atol=1e-5)
    empty = cnn.predict(X_TEST[:0], samples=True, embeddings=True)
    assert empty.proba.shape == (0, 10) and empty.embeddings.shape == (0, 32)


def test_fit_is_deterministic_per_seed_and_leaves_global_rng_alone(cnn: TorchAdapter) -> None:
    state = torch.get_rng_state()
    again = small_cnn(0).fit(X, Y)
    assert torch.equal(state, torch.get_rng_state())
    np.testing.assert_array_equal(again.predict_proba(X_TEST), cnn.predict_proba(X_TEST))
    other = small_cnn(1).fit(X, Y)
    assert not np.allclose(other.predict_proba(X_TEST), cnn.predict_proba(X_TEST))


def test_string_labels() -> None:
    model = small_cnn(epochs=6).fit(X, NAMES[Y])
    assert model.classes_.tolist() == sorted(NAMES.tolist())
    labels = model.predict_labels(X_TEST)
    assert labels.dtype.kind == "U"
    assert (labels == NAMES[Y_TEST]).mean() > 0.5


def test_save_load_round_trip(tmp_path: Path, cnn: TorchAdapter) -> None:
    strings = small_cnn(epochs=1).fit(X, NAMES[Y])
    for model in (cnn, strings):
        path = model.save(tmp_path / "model.pt")
        loaded = TorchAdapter.load(path)  # built-in networks need no build function
        assert loaded.classes_.dtype == model.classes_.dtype
        np.testing.assert_array_equal(loaded.classes_, model.classes_)
        a = model.predict(X_TEST, samples=True, embeddings=True)
        b = loaded.predict(X_TEST, samples=True, embeddings=True)
        np.testing.assert_array_equal(b.proba, a.proba)
        np.testing.assert_array_equal(b.samples, a.samples)
        np.testing.assert_array_equal(b.embeddings, a.embeddings)
        assert loaded.recipe == model.recipe and loaded.scaling == "global"


def test_custom_network_round_trip_needs_its_build(tmp_path: Path) -> None:
    model = TorchAdapter(
        BatchNormNet, TrainingRecipe(epochs=1), uncertainty="ensemble", n_members=2
    ).fit(X, Y)
    path = model.save(tmp_path / "custom.pt")
    with pytest.raises(ModelError, match="pass its build"):
        TorchAdapter.load(path)
    loaded = TorchAdapter.load(path, BatchNormNet)
    assert len(loaded.nets_) == 2 and loaded.uncertainty == "ensemble"
    np.testing.assert_array_equal(loaded.predict_proba(X_TEST), model.predict_proba(X_TEST))
    with pytest.raises(ModelError, match="does not match the network"):
        TorchAdapter.load(path, NoDropoutNet)


def test_corrupt_or_foreign_checkpoints_raise_model_error(
    tmp_path: Path, cnn: TorchAdapter
) -> None:
    data = cnn.save(tmp_path / "good.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    (tmp_path / "empty.pt").write_bytes(b"")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    for name in ("truncated", "junk", "empty"):
        with pytest.raises(ModelError, match="corrupt"):
            TorchAdapter.load(tmp_path / f"{name}.pt")
    payload = torch.load(tmp_path / "good.pt", weights_only=True)
    torch.save({**payload, "meta": "{}"}, tmp_path / "no_meta.pt")
    torch.save({**payload, "scale_std": torch.ones(3)}, tmp_path / "bad_scale.pt")
    for name in ("foreign", "no_meta", "bad_scale"):
        with pytest.raises(ModelError, match="not an exemplar torch checkpoint"):
            TorchAdapter.load(tmp_path / f"{name}.pt")
    with pytest.raises(ModelError, match="does not exist"):
        TorchAdapter.load(tmp_path / "missing.pt")


def test_load_never_unpickles_arbitrary_objects(tmp_path: Path) -> None:
    torch.save({"format": "exemplar.torch/1", "meta": Path("x")}, tmp_path / "evil.pt")
    with pytest.raises(ModelError, match="refusing to unpickle"):
        TorchAdapter.load(tmp_path / "evil.pt")


def test_default_fit_retrains_from_scratch(cnn: TorchAdapter) -> None:
    model = small_cnn()
    model.fit(X[:100], Y[:100])
    model.fit(X, Y)
    assert not model.warm_started_
    np.testing.assert_array_equal(model.predict_proba(X_TEST), cnn.predict_proba(X_TEST))


def test_warm_start_fine_tunes_from_current_weights() -> None:
    warm = small_cnn(warm_start=True).fit(X, Y)
    fresh = warm.history_[0].train_loss
    warm.fit(X, Y)
    assert warm.warm_started_
    # training continues where it stopped: below the fresh fit's last epoch, not its first
    assert warm.history_[0].train_loss[0] < fresh[-1] < fresh[0]
    # a new class changes the head's shape: the head restarts, the rest is carried over
    few = small_cnn(warm_start=True).fit(X[Y < 5], Y[Y < 5])
    conv = few.nets_[0].conv1.weight.detach().clone()
    few.recipe = dataclasses.replace(few.recipe, epochs=1, lr=1e-9)
    few.fit(X, Y)
    assert not few.warm_started_ and few.classes_.size == 10
    torch.testing.assert_close(few.nets_[0].conv1.weight.detach(), conv, atol=1e-6, rtol=0)


def test_single_class_is_a_clear_error() -> None:
    with pytest.raises(SingleClassError, match="only class 3"):
        small_cnn().fit(X[Y == 3], Y[Y == 3])


def test_bad_inputs_are_clear_errors(cnn: TorchAdapter) -> None:
    with pytest.raises(ModelError, match="not fitted"):
        small_cnn().predict(X_TEST)
    with pytest.raises(ModelError, match="expected rows of 64 features"):
        cnn.predict(X_TEST[:, :10])
    with pytest.raises(ModelError, match="square images"):
        SmallCNN(60, 10)
    with pytest.raises(ConfigError, match="invalid training recipe: lr=0"):
        TrainingRecipe(lr=0)
    with pytest.raises(ConfigError, match="at least 2 members"):
        small_cnn(uncertainty="ensemble", n_members=1).fit(X, Y)


def test_early_stopping_uses_a_stratified_split_and_restores_the_best_epoch() -> None:
    codes = np.repeat(np.arange(4), [50, 30, 19, 1])
    recipe = TrainingRecipe(validation_fraction=0.2, min_validation_size=10)
    train, val = _validation_split(codes, recipe, np.random.default_rng(0))
    assert val.size == 20 and np.bincount(codes[val], minlength=4).tolist() == [10, 6, 4, 0]
    assert np.intersect1d(train, val).size == 0 and train.size + val.size == codes.size
    stopping = TrainingRecipe(epochs=30, patience=2, lr=1e-2, min_validation_size=10)
    history = TorchAdapter(MLP, stopping).fit(X, Y).history_[0]
    assert len(history.val_loss) == len(history.train_loss) < 30  # stopped early
    assert history.best_epoch == int(np.argmin(history.val_loss))
    few = TorchAdapter(MLP, TrainingRecipe(epochs=2, min_validation_size=10)).fit(X[:60], Y[:60])
    assert few.history_[0].val_loss == []  # 6 held-out rows: too few, no split


def test_by_default_few_labels_all_train_and_early_stopping_starts_at_500() -> None:
    """A hold-out below 50 rows is skipped: every label trains the full schedule."""
    default = TrainingRecipe()
    assert (
        _validation_split(np.repeat(np.arange(10), 49), default, np.random.default_rng(0)) is None
    )
    split = _validation_split(np.repeat(np.arange(10), 50), default, np.random.default_rng(0))
    assert split is not None and split[1].size == 50
    history = TorchAdapter(MLP, TrainingRecipe(epochs=3)).fit(X, Y).history_[0]
    assert history.val_loss == [] and len(history.train_loss) == 3  # 300 labels: no hold-out


def test_make_torch_model_routes_parameters() -> None:
    model = make_torch_model("mlp", 7, hidden=(8,), dropout=0.1, epochs=3, n_samples=4)
    assert isinstance(model.build, NetSpec) and model.build.params == {
        "hidden": (8,),
        "dropout": 0.1,
    }
    assert model.recipe == TrainingRecipe(epochs=3, seed=7) and model.n_samples == 4
    assert model.scaling == "feature"
    fitted = model.fit(X, Y)
    assert fitted.nets_[0].head.in_features == 8
    with pytest.raises(ConfigError, match="unknown torch model 'resnet'"):
        make_torch_model("resnet")
    with pytest.raises(ConfigError, match="unknown parameter.*: depth"):
        make_torch_model("cnn", depth=3)


def test_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    for bad in ("cuda", "cuda:1"):
        with pytest.raises(ConfigError, match="CUDA is not available"):
            make_torch_model("cnn", device=bad)
    with pytest.raises(ConfigError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")


def test_importing_exemplar_models_does_not_import_torch() -> None:
    code = "import sys, exemplar, exemplar.models; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_missing_torch_gives_an_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    assert exemplar.models.TorchAdapter is TorchAdapter
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ModelError, match=r"pip install 'exemplar\[torch\]'"):
        exemplar.models.make_torch_model  # noqa: B018
