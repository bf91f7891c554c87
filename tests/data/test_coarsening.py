"""Heavy-edge-matching coarsening: exact sizes 96/48, nesting, part ownership, determinism."""

from __future__ import annotations

import numpy as np

from hipart.data.coarsening import (
    ASSET_PATH,
    _best_pairing,
    heavy_edge_matching,
    load_clusters,
    mesh_edges,
    vertex_areas,
)
from hipart.skeleton import NUM_BONES, NUM_DENSE, NUM_FINE


def test_committed_asset_sizes_and_nesting():
    cl = load_clusters(ASSET_PATH)
    fine = cl.fine_of_vertex
    assert fine.shape == (cl.num_vertices,)
    assert sorted(np.unique(fine)) == list(range(NUM_FINE))  # exactly 96 non-empty clusters
    dense = cl.dense_of_vertex
    assert sorted(np.unique(dense)) == list(range(NUM_DENSE))  # exactly 48
    # nesting: every fine cluster lies in exactly one dense cluster, and dense k = fine {2k, 2k+1}
    for f in range(NUM_FINE):
        assert set(np.unique(dense[fine == f])) == {f // 2}
    # ownership: dense tokens 3p..3p+2 (fine 6p..6p+5) belong to bone part p
    part_of_fine = np.arange(NUM_FINE) // (NUM_FINE // NUM_BONES)
    assert (part_of_fine // 1 == np.arange(NUM_FINE) // 6).all() and part_of_fine.max() == NUM_BONES - 1
    # averaging matrix rows are means (sum to 1)
    M = cl.averaging_matrix()
    np.testing.assert_allclose(M.sum(axis=1), 1.0)
    assert M.shape == (NUM_FINE + NUM_DENSE + 2, cl.num_vertices)


def test_dense_mean_is_the_mean_of_its_two_fine_clusters_weighted_by_size():
    cl = load_clusters()
    V = np.random.default_rng(0).normal(size=(cl.num_vertices, 3))
    M = cl.averaging_matrix()
    P = M @ V
    n = np.bincount(cl.fine_of_vertex, minlength=NUM_FINE).astype(float)
    for k in (0, 17, 47):
        a, b = 2 * k, 2 * k + 1
        expect = (n[a] * P[a] + n[b] * P[b]) / (n[a] + n[b])
        np.testing.assert_allclose(P[NUM_FINE + k], expect, atol=1e-12)


def test_hem_on_a_path_graph_hand_computed():
    # path 0-1-2-3-4-5: level 1 visits 0 (size 1) -> matches 1; 2 -> 3; 4 -> 5: {01}{23}{45}
    edges = np.array([[0, 1], [1, 2], [2, 3], [3, 4], [4, 5]])
    lab = heavy_edge_matching(6, edges, 3)
    assert lab.tolist() == [0, 0, 1, 1, 2, 2]
    # target 4 stops after the second merge of level 1
    assert heavy_edge_matching(6, edges, 4).tolist() == [0, 0, 1, 1, 2, 3]
    # exact target reached through several levels, deterministic
    lab2 = heavy_edge_matching(6, edges, 2)
    assert lab2.tolist() == heavy_edge_matching(6, edges, 2).tolist()
    assert len(np.unique(lab2)) == 2


def test_hem_prefers_the_heavier_edge_and_smaller_clusters():
    # triangle 0-1-2 plus a pendant 3 on 2; node 1 is big (size 5)
    edges = np.array([[0, 1], [0, 2], [1, 2], [2, 3]])
    lab = heavy_edge_matching(4, edges, 2, node_size=np.array([1.0, 5.0, 1.0, 1.0]))
    # level 1, visit order by size: 0 picks max w*(1/s0+1/sj): node 2 (2.0) over node 1 (1.2) -> {0,2};
    # 3 and 1 have no unmatched neighbour left. Level 2: 3 (size 1) joins {0,2} (1*(1+1/2)) -> 2 clusters
    assert lab.tolist() == [0, 1, 0, 0]


def test_best_pairing_and_mesh_helpers():
    w = np.zeros((6, 6))
    for a, b, v in ((0, 5, 3), (1, 4, 3), (2, 3, 3), (0, 1, 1)):
        w[a, b] = w[b, a] = v
    assert _best_pairing(6, w) == [(0, 5), (1, 4), (2, 3)]
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    assert mesh_edges(faces).tolist() == [[0, 1], [0, 2], [0, 3], [1, 2], [2, 3]]
    verts = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], float)
    np.testing.assert_allclose(vertex_areas(verts, faces), [1 / 3, 1 / 6, 1 / 3, 1 / 6])


def test_mean_body_asset_matches_cluster_asset():
    from hipart.data.body_mesh import MEAN_BODY_PATH, load_mean_body

    mb = load_mean_body(MEAN_BODY_PATH)
    P = NUM_FINE + NUM_DENSE + 2
    assert mb.table.shape == (P, len(mb.template.bone_names), 4)
    # homogeneous coordinate of each point's table = sum of its skinning weights = 1 (weights sum to 1)
    np.testing.assert_allclose(mb.table[..., 3].sum(axis=1), 1.0, atol=1e-9)
    assert mb.template.bone_names[0] == "Hips" and mb.template.bone_parents[0] == -1
