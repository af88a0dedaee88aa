from costmodels.network.layers import ConvLayer
from costmodels.problems.candidates import Form, RankGrid, Tucker2Candidate, network_candidates
from costmodels.problems.workloads import Workload, layer_workloads, network_workloads, subconv_workloads


def test_workload_of_a_strided_layer_uses_timeloop_dimension_names():
    layer = ConvLayer.from_input("l", 128, 256, (3, 5), (28, 30), stride=(2, 1), padding=(1, 2))
    w = Workload.from_layer(layer)
    assert (w.C, w.M, w.S, w.R, w.Q, w.P, w.N) == (128, 256, 3, 5, 14, 30, 1)
    assert (w.Hstride, w.Wstride) == (2, 1)
    assert w.macs == layer.macs
    # Padding is not a Timeloop dimension: the input extent includes the halo.
    assert (w.input_height, w.input_width) == (29, 34)


def test_subconv_workloads_of_reference_candidate():
    layer = ConvLayer.from_input("layer3.0.conv2", 256, 256, 3, 14, padding=1)
    uses = subconv_workloads(Tucker2Candidate(layer, Form.TUCKER2, 128, 128))
    shapes = [(u.workload.R, u.workload.S, u.workload.C, u.workload.M, u.workload.P, u.workload.Q) for u in uses]
    assert shapes == [(1, 1, 256, 128, 14, 14), (3, 3, 128, 128, 14, 14), (1, 1, 128, 256, 14, 14)]
    assert all(u.count == 1 for u in uses)


def test_depthwise_layer_is_one_group_workload_run_per_channel():
    layer = ConvLayer.from_input("dw", 96, 96, 3, 56, stride=2, padding=1, groups=96)
    (use,) = layer_workloads(layer)
    assert (use.workload.C, use.workload.M, use.count) == (1, 1, 96)
    assert use.count * use.workload.macs == layer.macs


def test_key_is_stable_and_content_based():
    a = Workload(C=64, M=64, R=3, S=3, N=1, P=56, Q=56)
    assert a.key == Workload(C=64, M=64, R=3, S=3, N=1, P=56, Q=56).key
    assert a.key != Workload(C=64, M=64, R=3, S=3, N=1, P=56, Q=56, Hstride=2).key
    assert len(a.key) == 16 and int(a.key, 16) >= 0


def test_dedup_across_layers_and_candidates():
    # Two identical layers: every workload of the second is a duplicate of the first.
    layers = [ConvLayer.from_input(n, 64, 64, 3, 56, padding=1) for n in ("a", "b")]
    net = network_workloads(network_candidates(layers, RankGrid(exclude_first=False)))
    assert net.n_candidates == 8
    assert net.n_workload_uses == 2 * (1 + 4 * 3)
    # Original + 4 x (1x1 64->r, 3x3 r->r, 1x1 r->64) = 13 shapes, but at r=64 the 3x3 core equals
    # the original and 1x1 64->64 is both sub1 and sub3: 11 unique.
    assert len(net.unique) == 11


def test_workload_rejects_non_positive_values():
    import pytest
    with pytest.raises(ValueError, match="P"):
        Workload(C=1, M=1, R=1, S=1, N=1, P=0, Q=1)
