import pytest

from costmodels.errors import UnknownNameError
from costmodels.network.layers import ConvLayer
from costmodels.problems.candidates import Form, RankGrid, Tucker2Candidate, candidates_for, network_candidates


def conv(c, f, k=3, size=14, stride=1, groups=1, name="l"):
    return ConvLayer.from_input(name, c, f, k, size, stride=stride, padding=k // 2, groups=groups)


def ranks(cands):
    return [(c.r1, c.r2) for c in cands]


def test_equal_ranks_step_32_bounded_by_channels():
    cands = candidates_for(conv(256, 256), RankGrid())
    assert [c.r1 for c in cands] == [32, 64, 96, 128, 160, 192, 224, 256]
    assert all(c.r1 == c.r2 and c.form is Form.TUCKER2 for c in cands)


def test_equal_rank_bounded_by_the_narrower_side():
    assert [c.r1 for c in candidates_for(conv(128, 256), RankGrid())] == [32, 64, 96, 128]


@pytest.mark.parametrize("channels,expected", [(64, [16, 32, 48, 64]), (32, [8, 16, 24, 32]), (16, [8, 16])])
def test_narrow_layers_use_finer_steps(channels, expected):
    assert [c.r1 for c in candidates_for(conv(channels, channels), RankGrid())] == expected


def test_configurable_steps():
    grid = RankGrid(step=64, narrow_steps=((64, 32),))
    assert [c.r1 for c in candidates_for(conv(256, 256), grid)] == [64, 128, 192, 256]
    assert [c.r1 for c in candidates_for(conv(64, 64), grid)] == [32, 64]


def test_full_grid_pairs_each_side_with_its_own_bound():
    cands = candidates_for(conv(64, 128), RankGrid(equal_ranks=False))
    assert ranks(cands) == [(r1, r2) for r1 in (32, 64, 96, 128) for r2 in (16, 32, 48, 64)]


def test_subconvs_follow_haloc_eq_2_to_4():
    layer = conv(128, 256, stride=2, size=28)
    first, core, last = Tucker2Candidate(layer, Form.TUCKER2, r1=96, r2=64).subconvs
    assert (first.in_channels, first.out_channels, first.kernel, first.stride) == (128, 64, (1, 1), (1, 1))
    assert first.input_size == first.output_size == (28, 28)
    assert (core.in_channels, core.out_channels, core.kernel, core.stride, core.padding) == (64, 96, (3, 3), (2, 2),
                                                                                           (1, 1))
    assert core.output_size == (14, 14)
    assert (last.in_channels, last.out_channels, last.kernel) == (96, 256, (1, 1))
    assert last.input_size == last.output_size == (14, 14)


def test_candidate_macs_and_params_sum_the_subconvs():
    layer = conv(256, 256)
    cand = Tucker2Candidate(layer, Form.TUCKER2, 64, 64)
    assert cand.params == 256 * 64 + 64 * 64 * 9 + 64 * 256
    assert cand.macs == 14 * 14 * cand.params


def test_pointwise_layers_get_the_two_factor_form_with_stride_on_the_first():
    layer = conv(128, 256, k=1, size=28, stride=2)
    cands = candidates_for(layer, RankGrid())
    assert {c.form for c in cands} == {Form.LOW_RANK}
    first, second = cands[0].subconvs
    assert (first.in_channels, first.out_channels, first.stride, first.output_size) == (128, 32, (2, 2), (14, 14))
    assert (second.in_channels, second.out_channels, second.stride, second.input_size) == (32, 256, (1, 1),
                                                                                          (14, 14))
    assert cands[0].macs == 14 * 14 * (128 * 32 + 32 * 256)


def test_grouped_layers_and_first_layer_are_kept():
    layers = [conv(3, 64, name="stem"), conv(64, 64, name="a"), conv(64, 64, groups=64, name="dw")]
    result = network_candidates(layers, RankGrid())
    assert [(lc.layer.name, lc.excluded, len(lc.candidates)) for lc in result] == [
        ("stem", True, 0), ("a", False, 4), ("dw", False, 0)]
    included = network_candidates(layers, RankGrid(exclude_first=False, exclude=("a",)))
    assert [len(lc.candidates) for lc in included] == [0, 0, 0]  # stem: 3 channels, no multiple of 8 fits
    assert included[1].excluded


def test_unknown_excluded_layer_is_an_error():
    with pytest.raises(UnknownNameError, match="unknown layer .--exclude. .nope.; available: "):
        network_candidates([conv(64, 64)], RankGrid(exclude=("nope",)))


def test_original_candidate_is_the_layer_itself():
    layer = conv(64, 128)
    (lc,) = network_candidates([layer], RankGrid(exclude_first=False))
    assert lc.original.subconvs == (layer,)
    assert lc.original.macs == layer.macs
