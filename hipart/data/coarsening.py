"""Mesh-graph coarsening by heavy edge matching (HEM) into 96 fine and 48 dense vertex clusters.

Like Pose2Mesh / HiPART App. B the template mesh graph is coarsened by repeated heavy edge matching;
to honour the model's contract that sparse token (bone) p owns dense tokens 3p..3p+2 (ARCHITECTURE
§3), the coarsening runs inside each of the 16 bone parts (vertices nearest to that bone of the rest
skeleton): HEM to exactly 6 fine clusters per part, then the best perfect matching of those 6 into 3 dense
clusters. Hence fine clusters 2k and 2k+1 make up dense cluster k (nesting) and dense 3p..3p+2 belong to
bone p. Inside a part, clusters are ordered proximal -> distal along the bone. Fully deterministic:
visit order and ties are by cluster size then index, no random numbers.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hipart.skeleton import BONES, NUM_BONES, NUM_DENSE, NUM_FINE

FINE_PER_PART = NUM_FINE // NUM_BONES  # 6
DENSE_PER_PART = NUM_DENSE // NUM_BONES  # 3
ASSET_VERSION = 1
ASSET_PATH = Path(__file__).resolve().parents[1] / "assets" / f"mesh_clusters_v{ASSET_VERSION}.npz"
NUM_LANDMARKS = 2  # nose tip, head top
LANDMARK_NAMES = ("nose", "head_top")


def mesh_edges(faces: np.ndarray) -> np.ndarray:
    """Unique undirected edges [E, 2] (i < j) of a triangle/polygon face array."""
    k = faces.shape[1]
    e = np.concatenate([faces[:, [i, (i + 1) % k]] for i in range(k)], axis=0)
    e = np.sort(e, axis=1)
    return np.unique(e, axis=0)


def vertex_areas(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Surface area per vertex (a third of each adjacent triangle): HEM balances clusters by area, so that
    densely meshed face/hands/feet do not take most clusters."""
    tri = vertices[faces]
    a = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    out = np.zeros(len(vertices))
    for k in range(faces.shape[1]):
        np.add.at(out, faces[:, k], a / faces.shape[1])
    return np.maximum(out, 1e-9)


def _segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ab = b - a
    t = np.clip(((p - a) @ ab) / max(float(ab @ ab), 1e-12), 0.0, 1.0)
    return np.linalg.norm(p - (a + t[:, None] * ab), axis=1), t


def segment_parts(vertices: np.ndarray, joints: np.ndarray) -> np.ndarray:
    """Part (bone index 0..15) of every vertex: the nearest bone segment of the 17-joint rest skeleton."""
    d = np.stack([_segment_distance(vertices, joints[p], joints[c])[0] for p, c in BONES], axis=1)
    return np.argmin(d, axis=1)


def _components(n: int, edges: np.ndarray) -> np.ndarray:
    parent = np.arange(n)

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return np.array([find(i) for i in range(n)])


def _connect(points: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Add the shortest edges needed to make a point graph connected (nearest pairs between components)."""
    n = len(points)
    edges = edges.copy()
    while True:
        comp = _components(n, edges)
        labels, counts = np.unique(comp, return_counts=True)
        if len(labels) == 1:
            return edges
        small = labels[np.argmin(counts)]
        a = np.nonzero(comp == small)[0]
        b = np.nonzero(comp != small)[0]
        d = np.linalg.norm(points[a][:, None] - points[b][None], axis=-1)
        i, j = np.unravel_index(np.argmin(d), d.shape)
        edges = np.concatenate([edges, np.sort([[a[i], b[j]]], axis=1)], axis=0)


def heavy_edge_matching(n: int, edges: np.ndarray, target: int, node_size: np.ndarray | None = None
                        ) -> np.ndarray:  # fmt: skip
    """Coarsen a connected graph of n nodes to exactly `target` clusters by repeated HEM.

    Each level visits clusters by (size, index) and matches each unmatched one with the unmatched
    neighbour of largest w_ij * (1/size_i + 1/size_j) (w = number of mesh edges between them; size = summed
    node_size, default 1 per node), which favours compact, balanced clusters. Stops as soon as `target`
    clusters remain. Returns labels [n] in 0..target-1.
    """
    if target > n:
        raise ValueError(f"cannot make {target} clusters from {n} vertices")
    node_size = np.ones(n) if node_size is None else np.asarray(node_size, float)
    label = np.arange(n)
    count = n
    while count > target:
        # coarse graph of the current clusters
        uniq, lab = np.unique(label, return_inverse=True)
        m = len(uniq)
        size = np.bincount(lab, weights=node_size, minlength=m)
        ce = lab[edges]
        ce = ce[ce[:, 0] != ce[:, 1]]
        ce = np.sort(ce, axis=1)
        pairs, w = np.unique(ce, axis=0, return_counts=True)
        nbrs: list[list[tuple[int, float]]] = [[] for _ in range(m)]
        for (a, b), wt in zip(pairs, w, strict=True):
            nbrs[a].append((b, float(wt)))
            nbrs[b].append((a, float(wt)))
        matched = np.full(m, -1)
        merges = 0
        for i in sorted(range(m), key=lambda k: (size[k], k)):
            if matched[i] >= 0:
                continue
            best, best_s = -1, -1.0
            for j, wt in nbrs[i]:
                if matched[j] >= 0:
                    continue
                s = wt * (1.0 / size[i] + 1.0 / size[j])
                if s > best_s or (s == best_s and j < best):
                    best, best_s = j, s
            if best < 0:
                matched[i] = i
                continue
            matched[i], matched[best] = best, i
            merges += 1
            if count - merges == target:
                break
        if merges == 0:
            raise ValueError("graph is disconnected; cannot coarsen further")
        rep = np.arange(m)
        for i in range(m):
            if matched[i] >= 0:
                rep[i] = min(i, matched[i])
        label = rep[lab]
        count -= merges
    _, label = np.unique(label, return_inverse=True)
    return label


def _best_pairing(k: int, w: np.ndarray) -> list[tuple[int, int]]:
    """Perfect matching of k (even) clusters maximising the summed inter-cluster edge weight."""
    best, best_s = None, -1.0
    for perm in itertools.permutations(range(k)):
        pairs = [tuple(sorted(perm[i : i + 2])) for i in range(0, k, 2)]
        if pairs != sorted(pairs) or any(a > b for a, b in pairs):
            continue
        s = sum(w[a, b] for a, b in pairs)
        if s > best_s:
            best, best_s = pairs, s
    return best


@dataclass
class MeshClusters:
    """Fine cluster of every template vertex (dense k = fine {2k, 2k+1}) and landmark vertices."""

    fine_of_vertex: np.ndarray  # [V] in 0..95
    landmark_vertices: np.ndarray  # [2, n] vertex ids averaged for nose tip / head top
    num_vertices: int
    topology_hash: str

    @property
    def dense_of_vertex(self) -> np.ndarray:
        """Dense cluster of every vertex (nested: fine f lies in dense f // 2)."""
        return self.fine_of_vertex // 2

    def averaging_matrix(self) -> np.ndarray:
        """[17-free points, V]: rows = 96 fine means, 48 dense means, 2 landmark means (in that order)."""
        V = self.num_vertices
        M = np.zeros((NUM_FINE + NUM_DENSE + NUM_LANDMARKS, V))
        for level, lab, n, off in ((0, self.fine_of_vertex, NUM_FINE, 0),
                                   (1, self.dense_of_vertex, NUM_DENSE, NUM_FINE)):  # fmt: skip
            del level
            cnt = np.bincount(lab, minlength=n).astype(float)
            M[off + lab, np.arange(V)] = 1.0 / cnt[lab]
        for i, vs in enumerate(self.landmark_vertices):
            M[NUM_FINE + NUM_DENSE + i, vs] = 1.0 / len(vs)
        return M


def topology_hash(faces: np.ndarray) -> str:
    """Short content hash of a face array (ties the asset to the mesh topology)."""
    return hashlib.sha256(np.ascontiguousarray(faces, dtype=np.int64).tobytes()).hexdigest()[:16]


def build_clusters(vertices: np.ndarray, faces: np.ndarray, joints: np.ndarray,
                   head_bone_head: np.ndarray) -> MeshClusters:  # fmt: skip
    """Coarsen the rest template (world frame, Y up, facing +Z) into the 96/48 nested clusters."""
    V = len(vertices)
    edges = mesh_edges(faces)
    part = segment_parts(vertices, joints)
    area = vertex_areas(vertices, faces)
    fine = np.full(V, -1)
    for p, (a, c) in enumerate(BONES):
        vs = np.nonzero(part == p)[0]
        if len(vs) < FINE_PER_PART:
            raise ValueError(f"bone part {p} has only {len(vs)} vertices")
        loc = -np.ones(V, dtype=np.int64)
        loc[vs] = np.arange(len(vs))
        e = loc[edges]
        e = e[(e >= 0).all(axis=1)]
        e = _connect(vertices[vs], e)
        lab = heavy_edge_matching(len(vs), e, FINE_PER_PART, node_size=area[vs])
        # 6 fine -> 3 dense: best perfect matching on the cluster adjacency
        ce = lab[e]
        w = np.zeros((FINE_PER_PART, FINE_PER_PART))
        np.add.at(w, (ce[:, 0], ce[:, 1]), 1.0)
        w = w + w.T
        np.fill_diagonal(w, 0.0)
        pairs = _best_pairing(FINE_PER_PART, w)
        # order: proximal -> distal along the bone (projection of cluster centroids)
        _, t = _segment_distance(vertices[vs], joints[a], joints[c])
        ab = joints[c] - joints[a]
        tt = ((vertices[vs] - joints[a]) @ ab) / float(ab @ ab)
        del t
        ct = np.array([tt[lab == k].mean() for k in range(FINE_PER_PART)])
        pairs = sorted(pairs, key=lambda pr: (ct[list(pr)].mean(), pr))
        order = [k for pr in pairs for k in sorted(pr, key=lambda k: (ct[k], k))]
        new = np.empty(FINE_PER_PART, dtype=np.int64)
        new[order] = np.arange(FINE_PER_PART)
        fine[vs] = p * FINE_PER_PART + new[lab]
    assert (fine >= 0).all()
    # landmarks: the 8 most forward vertices of the face (nose tip) and 8 highest (crown)
    head = np.nonzero(vertices[:, 1] > head_bone_head[1])[0]
    hv = vertices[head]
    crown = head[np.argsort(-hv[:, 1], kind="stable")[:8]]
    face = head[(np.abs(hv[:, 0] - head_bone_head[0]) < 0.02) & (hv[:, 1] < np.percentile(hv[:, 1], 60))]
    nose = face[np.argsort(-vertices[face, 2], kind="stable")[:8]]
    return MeshClusters(fine.astype(np.int64), np.stack([nose, crown]), V, topology_hash(faces))


def save_clusters(clusters: MeshClusters, path: str | Path = ASSET_PATH, anny_version: str = "") -> None:
    """Write the cluster asset (small .npz, versioned by file name)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path,
        version=np.int64(ASSET_VERSION),
        fine_of_vertex=clusters.fine_of_vertex.astype(np.int16),
        landmark_vertices=clusters.landmark_vertices.astype(np.int32),
        landmark_names=np.array(LANDMARK_NAMES),
        num_vertices=np.int64(clusters.num_vertices),
        topology_hash=np.array(clusters.topology_hash),
        anny_version=np.array(anny_version),
    )


def load_clusters(path: str | Path = ASSET_PATH) -> MeshClusters:
    """Read the committed cluster asset."""
    try:
        z = np.load(path)
    except OSError as e:
        msg = f"mesh cluster asset not found at {path}: run `hipart-data clusters` ({e})"
        raise FileNotFoundError(msg) from None
    if int(z["version"]) != ASSET_VERSION:
        raise ValueError(f"{path}: cluster asset version {int(z['version'])}, expected {ASSET_VERSION}")
    return MeshClusters(
        fine_of_vertex=z["fine_of_vertex"].astype(np.int64),
        landmark_vertices=z["landmark_vertices"].astype(np.int64),
        num_vertices=int(z["num_vertices"]),
        topology_hash=str(z["topology_hash"]),
    )
