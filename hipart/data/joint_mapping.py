"""Semantic joint mapping: BVH joint names of known naming schemes -> semantic body landmarks.

Semantic keys (l_/r_ = the subject's left/right): hips (root), spine (optional), chest (where the
clavicles branch), neck (base of the neck), head, {l,r}_hip, _knee, _ankle, _toe (optional; the foot's
End Site when missing), _collar (optional), _shoulder, _elbow, _wrist. Families are matched on exact
names first (the CMU conversions, Mixamo); any other skeleton goes through the generic resolver
(Hips/Spine/Chest/Neck/Head/Shoulder/UpperArm/LowerArm/Hand/UpperLeg/LowerLeg/Foot/Toes with
_L/_R, .L/.R, L_/R_ or Left/Right).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

REQUIRED: tuple[str, ...] = (
    "hips", "chest", "neck", "head",
    "l_hip", "l_knee", "l_ankle", "r_hip", "r_knee", "r_ankle",
    "l_shoulder", "l_elbow", "l_wrist", "r_shoulder", "r_elbow", "r_wrist",
)  # fmt: skip
OPTIONAL: tuple[str, ...] = ("spine", "l_toe", "r_toe", "l_collar", "r_collar")
SEMANTIC_KEYS: tuple[str, ...] = REQUIRED + OPTIONAL


def _lr(table: dict[str, str]) -> dict[str, str]:
    """Expand '{S}' (Left/Right), '{s}' (l/r) and '{C}' (L/R) templates for both sides."""
    out = {}
    for key, name in table.items():
        if key.startswith("x_"):
            for side, S, s, C in (("l", "Left", "l", "L"), ("r", "Right", "r", "R")):
                out[f"{side}_{key[2:]}"] = name.format(S=S, s=s, C=C)
        else:
            out[key] = name
    return out


# Exact-name families (the corpus's four + Mixamo with its namespace stripped).
FAMILIES: dict[str, dict[str, str]] = {
    "cgspeed-mb": _lr({
        "hips": "Hips", "spine": "LowerBack", "chest": "Spine1", "neck": "Neck", "head": "Head",
        "x_hip": "{S}UpLeg", "x_knee": "{S}Leg", "x_ankle": "{S}Foot", "x_toe": "{S}ToeBase",
        "x_collar": "{S}Shoulder", "x_shoulder": "{S}Arm", "x_elbow": "{S}ForeArm", "x_wrist": "{S}Hand",
    }),
    "cgspeed-max": _lr({
        "hips": "Hips", "spine": "lowerback", "chest": "Chest2", "neck": "lowerneck", "head": "Head",
        "x_hip": "{S}Hip", "x_knee": "{S}Knee", "x_ankle": "{S}Ankle", "x_toe": "{S}Toe",
        "x_collar": "{S}Collar", "x_shoulder": "{S}Shoulder", "x_elbow": "{S}Elbow", "x_wrist": "{S}Wrist",
    }),
    "daz": _lr({
        "hips": "hip", "spine": "abdomen", "chest": "chest", "neck": "neck", "head": "head",
        "x_hip": "{s}Thigh", "x_knee": "{s}Shin", "x_ankle": "{s}Foot",
        "x_collar": "{s}Collar", "x_shoulder": "{s}Shldr", "x_elbow": "{s}ForeArm", "x_wrist": "{s}Hand",
    }),
    "asf-names": _lr({
        "hips": "hip", "spine": "lowerback", "chest": "thorax", "neck": "lowerneck", "head": "head",
        "x_hip": "{s}femur", "x_knee": "{s}tibia", "x_ankle": "{s}foot", "x_toe": "{s}toes",
        "x_collar": "{s}clavicle", "x_shoulder": "{s}humerus", "x_elbow": "{s}radius", "x_wrist": "{s}wrist",
    }),
    "mixamo": _lr({
        "hips": "Hips", "spine": "Spine", "chest": "Spine2", "neck": "Neck", "head": "Head",
        "x_hip": "{S}UpLeg", "x_knee": "{S}Leg", "x_ankle": "{S}Foot", "x_toe": "{S}ToeBase",
        "x_collar": "{S}Shoulder", "x_shoulder": "{S}Arm", "x_elbow": "{S}ForeArm", "x_wrist": "{S}Hand",
    }),
}  # fmt: skip

# Generic resolver: base-name aliases (lower case, separators removed) per semantic part.
_GENERIC_ALIASES: dict[str, tuple[str, ...]] = {
    "hips": ("hips", "hip", "pelvis", "root"),
    "spine": ("spine", "spine0", "lowerback", "abdomen"),
    "chest": ("upperchest", "chest2", "spine2", "chest", "spine1", "thorax"),
    "neck": ("neck", "neck1", "lowerneck"),
    "head": ("head",),
    "hip": ("upperleg", "upleg", "thigh", "femur", "hip"),
    "knee": ("lowerleg", "leg", "shin", "calf", "knee", "tibia"),
    "ankle": ("foot", "ankle"),
    "toe": ("toes", "toe", "toebase", "ball"),
    "collar": ("shoulder", "clavicle", "collar"),
    "shoulder": ("upperarm", "arm", "humerus"),
    "elbow": ("lowerarm", "forearm", "elbow", "radius"),
    "wrist": ("hand", "wrist"),
}
_SIDED = ("hip", "knee", "ankle", "toe", "collar", "shoulder", "elbow", "wrist")


class UnknownSkeletonError(ValueError):
    """No naming scheme maps all required joints of a skeleton."""


@dataclass(frozen=True)
class JointMapping:
    """Which BVH joint stands for each semantic key, and the scheme that matched."""

    scheme: str
    joints: dict[str, str]  # semantic key -> BVH joint name

    def indices(self, names: list[str]) -> dict[str, int]:
        """Semantic key -> joint index in `names`."""
        return {k: names.index(v) for k, v in self.joints.items()}


def strip_namespace(name: str) -> str:
    """'mixamorig:LeftArm' / 'Armature|LeftArm' -> 'LeftArm'."""
    return re.split(r"[:|]", name)[-1]


def _split_side(name: str) -> tuple[str | None, str]:
    """Split a joint name into (side 'l'/'r'/None, normalised base name)."""
    n = strip_namespace(name)
    m = re.match(r"^(Left|Right|left|right|LEFT|RIGHT)[_\-. ]?(.+)$", n)
    if m:
        return m.group(1)[0].lower(), _norm(m.group(2))
    m = re.match(r"^(.+?)[_\-. ]?(Left|Right|left|right)$", n)
    if m:
        return m.group(2)[0].lower(), _norm(m.group(1))
    m = re.match(r"^([LRlr])[_\-. ](.+)$", n)
    if m:
        return m.group(1).lower(), _norm(m.group(2))
    m = re.match(r"^(.+?)[_\-. ]([LRlr])$", n)
    if m:
        return m.group(2).lower(), _norm(m.group(1))
    return None, _norm(n)


def _norm(s: str) -> str:
    return re.sub(r"[^a-z0-9]", "", s.lower())


def _generic(names: list[str]) -> dict[str, str]:
    parsed = [(_split_side(n), n) for n in names]
    out: dict[str, str] = {}
    taken: set[str] = set()
    # Sided parts: resolve in an order where specific aliases win (upperarm before arm, etc.).
    for part in ("hip", "knee", "ankle", "toe", "elbow", "wrist", "shoulder", "collar"):
        for side in ("l", "r"):
            for alias in _GENERIC_ALIASES[part]:
                hit = next((n for (s, b), n in parsed if s == side and b == alias and n not in taken), None)
                if hit:
                    out[f"{side}_{part}"] = hit
                    taken.add(hit)
                    break
    # 'Shoulder' means the clavicle when an UpperArm/Arm exists (Unity/Mixamo), else the upper arm.
    for side in ("l", "r"):
        if f"{side}_shoulder" not in out and f"{side}_collar" in out:
            out[f"{side}_shoulder"] = out.pop(f"{side}_collar")
    for part in ("hips", "spine", "neck", "head", "chest"):
        for alias in _GENERIC_ALIASES[part]:
            hit = next((n for (s, b), n in parsed if s is None and b == alias and n not in taken), None)
            if hit:
                out[part] = hit
                taken.add(hit)
                break
    if "chest" not in out and "spine" in out:
        out["chest"] = out.pop("spine")
    return out


def map_joints(names: list[str], parents: list[int] | None = None) -> JointMapping:
    """Map a skeleton's joint names to semantic keys; raises UnknownSkeletonError listing what is missing."""
    stripped = [strip_namespace(n) for n in names]
    back = dict(zip(stripped, names, strict=True))
    best: tuple[int, str, dict[str, str]] | None = None
    for fam, table in FAMILIES.items():
        hits = {k: back[v] for k, v in table.items() if v in back}
        if all(k in hits for k in REQUIRED):
            return JointMapping(fam, hits)
        score = sum(k in hits for k in REQUIRED)
        if best is None or score > best[0]:
            best = (score, fam, hits)
    gen = _generic(names)
    if all(k in gen for k in REQUIRED):
        return JointMapping("generic", gen)
    gscore = sum(k in gen for k in REQUIRED)
    if best is None or gscore >= best[0]:
        best = (gscore, "generic", gen)
    _, fam, hits = best
    missing = [k for k in REQUIRED if k not in hits]
    used = set(hits.values())
    unmapped = [n for n in names if n not in used]
    raise UnknownSkeletonError(
        f"unknown skeleton ({len(names)} joints): no naming scheme maps all required body joints. "
        f"Closest scheme {fam!r} lacks {missing}. Unmapped joints in the file: {unmapped}. "
        f"Known schemes: {sorted(FAMILIES)} + generic (Hips/Spine/Chest/Neck/Head/UpperArm/LowerArm/Hand/"
        f"UpperLeg/LowerLeg/Foot with _L/_R or Left/Right); rename the joints or extend "
        f"hipart.data.joint_mapping.FAMILIES."
    )
