"""Tests of :mod:`mixtures.models.cnn`: :class:`ConvNet` (PyTorch's MNIST example network) and
:class:`LinearHead`.

Oracles: the layer arithmetic of the reference network (28 → 26 → 24 → pool 12, so
``64·12·12 = 9216`` inputs to the 128-unit feature), ``torch.log_softmax`` / ``logsumexp``
(class log-probabilities normalise to one), a hand-applied ``nn.Linear`` for the head, and
autograd (every parameter receives a non-zero gradient from a classification loss). Seeded,
tiny batches on the CPU.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mixtures.models import ConvNet, LinearHead

B, C = 4, 10


@pytest.fixture
def net() -> ConvNet:
    torch.manual_seed(0)
    return ConvNet(LinearHead(128, C))


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(B, 1, 28, 28, generator=torch.Generator().manual_seed(1))


def test_layer_sizes_of_the_reference_network(net):
    convs = [m for m in net.body if isinstance(m, nn.Conv2d)]
    linears = [m for m in net.body if isinstance(m, nn.Linear)]
    assert [(m.in_channels, m.out_channels, m.kernel_size) for m in convs] == [
        (1, 32, (3, 3)), (32, 64, (3, 3))]
    assert [(m.in_features, m.out_features) for m in linears] == [(9216, 128)]
    dropouts = [m.p for m in net.body if isinstance(m, nn.Dropout)]
    assert dropouts == [0.25, 0.5]
    n_params = sum(p.numel() for p in net.parameters())
    assert n_params == (32 * 9 + 32) + (64 * 32 * 9 + 64) + (9216 * 128 + 128) + (128 * C + C)


def test_output_and_feature_shapes(net, images):
    net.eval()
    z = net.features(images)
    assert z.shape == (B, 128)
    assert bool((z >= 0).all())  # after the ReLU
    out = net(images)
    assert out.shape == (B, C)
    assert net.class_log_likelihood(images).shape == (B, C)


def test_log_probabilities_normalise(net, images):
    net.train()  # also with dropout active
    logp = net(images)
    torch.testing.assert_close(torch.logsumexp(logp, -1), torch.zeros(B), atol=1e-6, rtol=0)
    assert bool((logp <= 0).all())


def test_forward_is_log_softmax_of_the_head_logits(net, images):
    net.eval()
    logits = net.class_log_likelihood(images)
    z = net.features(images)
    torch.testing.assert_close(logits, z @ net.head.linear.weight.T + net.head.linear.bias)
    torch.testing.assert_close(net(images), torch.log_softmax(logits, -1))


def test_flattened_images_are_accepted(net, images):
    net.eval()
    torch.testing.assert_close(net(images.view(B, 28 * 28)), net(images))
    torch.testing.assert_close(net.features(images.view(B, -1)), net.features(images))


def test_eval_is_deterministic_and_train_uses_dropout(net, images):
    net.eval()
    torch.testing.assert_close(net(images), net(images))
    net.train()
    torch.manual_seed(2)
    first = net.features(images)
    torch.manual_seed(3)
    second = net.features(images)
    assert not torch.equal(first, second)
    torch.manual_seed(2)
    torch.testing.assert_close(net.features(images), first)  # seeded: reproducible


def test_gradients_reach_every_parameter(net, images):
    net.train()
    torch.manual_seed(4)
    labels = torch.arange(B) % C
    loss = nn.functional.nll_loss(net(images), labels)
    loss.backward()
    names = [name for name, _ in net.named_parameters()]
    assert len(names) == 8  # 2 convolutions, the feature layer and the head: weight and bias
    for name, p in net.named_parameters():
        assert p.grad is not None, name
        assert p.grad.shape == p.shape, name
        assert bool(torch.isfinite(p.grad).all()), name
        assert float(p.grad.abs().sum()) > 0, name


@pytest.mark.parametrize(("in_channels", "image_size", "feature_dim"), [(3, 16, 32), (1, 12, 8)])
def test_other_image_sizes_channels_and_feature_widths(in_channels, image_size, feature_dim):
    torch.manual_seed(0)
    net = ConvNet(LinearHead(feature_dim, 3), in_channels=in_channels, image_size=image_size,
                  feature_dim=feature_dim).eval()
    side = (image_size - 4) // 2
    assert net.body[-3].in_features == 64 * side * side
    x = torch.rand(2, in_channels, image_size, image_size,
                   generator=torch.Generator().manual_seed(5))
    assert net.features(x).shape == (2, feature_dim)
    assert net(x).shape == (2, 3)
    torch.testing.assert_close(net(x.reshape(2, -1)), net(x))  # flattened [B, C·H·W]


def test_dropout_rates_are_configurable(images):
    torch.manual_seed(0)
    net = ConvNet(LinearHead(128, C), dropout1=0.0, dropout2=0.0).train()
    torch.testing.assert_close(net(images), net(images))  # no dropout: train mode deterministic
    assert [m.p for m in net.body if isinstance(m, nn.Dropout)] == [0.0, 0.0]


def test_linear_head():
    torch.manual_seed(0)
    head = LinearHead(6, 4)
    assert head.num_classes == 4
    z = torch.randn(5, 6, generator=torch.Generator().manual_seed(6))
    logits = head.class_log_likelihood(z)
    torch.testing.assert_close(logits, z @ head.linear.weight.T + head.linear.bias)
    torch.testing.assert_close(head(z), logits - torch.logsumexp(logits, -1, keepdim=True))


def test_the_net_uses_any_head_with_class_log_likelihood(images):
    """The head is injected: a head's output and ``class_log_likelihood`` pass straight
    through."""

    class Recorder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[torch.Tensor] = []

        def forward(self, z: torch.Tensor) -> torch.Tensor:
            self.seen.append(z)
            return z[:, :3].log_softmax(-1)

        def class_log_likelihood(self, z: torch.Tensor) -> torch.Tensor:
            return -z[:, :3]

    torch.manual_seed(0)
    net = ConvNet(Recorder()).eval()
    out = net(images)
    z = net.head.seen[0]
    assert z.shape == (B, 128)
    torch.testing.assert_close(out, z[:, :3].log_softmax(-1))
    torch.testing.assert_close(net.class_log_likelihood(images), -z[:, :3])


def _reshaped_norms(net: ConvNet) -> list[tuple[float, float]]:
    """(σ of the used weight, σ of the unconstrained one) per constrained body layer, each
    weight reshaped to [out, in·k·k] (the oracle: ``torch.linalg.matrix_norm(ord=2)``)."""
    return [(float(torch.linalg.matrix_norm(m.weight.flatten(1), 2)),
             float(torch.linalg.matrix_norm(m.parametrizations.weight.original.flatten(1), 2)))
            for m in net.body if isinstance(m, (nn.Conv2d, nn.Linear))]


def test_spectral_norm_caps_each_body_weight_at_c(images):
    torch.manual_seed(0)
    net = ConvNet(LinearHead(128, C), spectral_norm=0.5).train()
    for _ in range(40):  # power iteration: one step per training forward
        net(images)
    norms = _reshaped_norms(net)
    assert len(norms) == 3  # both convolutions and the feature layer, not the head
    for used, raw in norms:
        assert raw > 0.6  # the initial weights exceed the cap ...
        # ... and scaled down to it; power iteration under-estimates σ, so from above
        assert 0.5 * (1 - 1e-5) <= used <= 0.5 * 1.01
    assert not hasattr(net.head.linear, "parametrizations")


def test_spectral_norm_leaves_weights_below_the_cap_and_trains(images):
    torch.manual_seed(0)
    plain = ConvNet(LinearHead(128, C)).eval()
    torch.manual_seed(0)
    capped = ConvNet(LinearHead(128, C), spectral_norm=100.0).eval()  # σ ≈ 0.6–1.5 < 100
    torch.testing.assert_close(capped(images), plain(images))
    capped.train()
    nn.functional.nll_loss(capped(images), torch.arange(B) % C).backward()
    for m in capped.body:
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            assert float(m.parametrizations.weight.original.grad.abs().sum()) > 0


def test_spectral_norm_state_survives_a_weights_only_round_trip(images, tmp_path):
    torch.manual_seed(0)
    net = ConvNet(LinearHead(128, C), spectral_norm=0.5).train()
    for _ in range(3):
        net(images)
    torch.save(net.state_dict(), tmp_path / "net.pt")
    other = ConvNet(LinearHead(128, C), spectral_norm=0.5)
    other.load_state_dict(torch.load(tmp_path / "net.pt", weights_only=True))
    torch.testing.assert_close(other.eval()(images), net.eval()(images))  # u, v kept


@pytest.mark.parametrize("coeff", [0.0, -1.0])
def test_spectral_norm_must_be_positive(coeff):
    with pytest.raises(ValueError, match=r"spectral_norm=.* must be > 0"):
        ConvNet(LinearHead(128, C), spectral_norm=coeff)


def test_conv_means_append_each_convolutions_channel_means(images):
    """``density_features`` = [the feature | conv 1's 32 and conv 2's 64 channel means after
    their ReLUs], checked against forward hooks on the ReLUs; without ``conv_means`` it is the
    feature itself; a density of the wrong width is refused with both widths named."""
    from mixtures.models.class_density import ClassDensity  # noqa: PLC0415

    torch.manual_seed(0)
    net = ConvNet(LinearHead(128, C), conv_means=True,
                  density=ClassDensity(C, 128 + 32 + 64)).eval()
    seen = []
    relus = [m for m in net.body[:4] if isinstance(m, nn.ReLU)]
    hooks = [r.register_forward_hook(lambda m, i, o: seen.append(o.mean(dim=(2, 3))))
             for r in relus]
    with torch.no_grad():
        feats = net.density_features(images)
    for h in hooks:
        h.remove()
    assert net.density_dim == 224 and feats.shape == (B, 224)
    torch.testing.assert_close(feats[:, :128], net.features(images))
    torch.testing.assert_close(feats[:, 128:160], seen[0])
    torch.testing.assert_close(feats[:, 160:], seen[1])
    plain = ConvNet(LinearHead(128, C)).eval()
    assert torch.equal(plain.density_features(images), plain.features(images))
    with pytest.raises(ValueError, match=r"feature_dim=128 must be 224.*channel means"):
        ConvNet(LinearHead(128, C), conv_means=True, density=ClassDensity(C, 128))
